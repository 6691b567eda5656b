"""Typed errors of the connector layer: what went wrong with a tool, in terms the engine can act on."""


class ConnectorError(Exception):
    """Base of every error a connector or the HTTP client raises."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthError(ConnectorError):
    """The tool refused the credentials (401, or 403 that is not a rate limit)."""


class NotFound(ConnectorError):
    """The item or endpoint does not exist (404, or 410 for a retired endpoint)."""


class RateLimited(ConnectorError):
    """The tool asked us to wait longer than we are willing to wait in-line."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Unavailable(ConnectorError):
    """The tool did not answer properly after the retries: 5xx, timeouts, connection errors."""


class BadRequest(ConnectorError):
    """The tool rejected what we sent (4xx other than auth, not found and rate limits)."""


class BadPayload(ConnectorError):
    """The tool answered with something we cannot read: not JSON, or not the expected shape."""


class PageLimitExceeded(ConnectorError):
    """Paging went past its cap; raised rather than silently returning a truncated result."""
