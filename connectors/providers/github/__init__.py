from connectors.providers.github.provider import GitHubConnector

__all__ = ["GitHubConnector"]
