from connectors.providers.jenkins.provider import JenkinsConnector

__all__ = ["JenkinsConnector"]
