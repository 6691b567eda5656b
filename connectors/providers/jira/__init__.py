from connectors.providers.jira.provider import JiraConnector

__all__ = ["JiraConnector"]
