"""One package per tool; importing this registers every provider with connectors.base."""

from connectors.providers import github, gitlab, jenkins, jira, salesforce, zendesk

__all__ = ["github", "gitlab", "jenkins", "jira", "salesforce", "zendesk"]
