from connectors.providers.targetprocess.provider import TargetprocessConnector

__all__ = ["TargetprocessConnector"]
