"""One package per tool; importing this registers every provider with connectors.base."""

from connectors.providers import csv, github, gitlab, jenkins, jira, salesforce, targetprocess, zendesk

__all__ = ["csv", "github", "gitlab", "jenkins", "jira", "salesforce", "targetprocess", "zendesk"]
