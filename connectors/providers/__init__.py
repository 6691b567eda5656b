"""One package per tool; importing this registers every provider with connectors.base."""

from connectors.providers import github, jira

__all__ = ["github", "jira"]
