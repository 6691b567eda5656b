from connectors.providers.zendesk.provider import ZendeskConnector

__all__ = ["ZendeskConnector"]
