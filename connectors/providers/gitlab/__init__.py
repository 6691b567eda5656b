from connectors.providers.gitlab.provider import GitLabConnector

__all__ = ["GitLabConnector"]
