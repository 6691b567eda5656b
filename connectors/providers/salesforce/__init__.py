from connectors.providers.salesforce.provider import SalesforceConnector

__all__ = ["SalesforceConnector"]
