"""One package per tool; importing this registers every provider with connectors.base."""

from connectors.providers import jira

__all__ = ["jira"]
