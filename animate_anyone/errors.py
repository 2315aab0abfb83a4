"""One error family for the whole project, sorted by whether a retry can help.

Each stage catches what its external tool raises and re-raises one of these; the flows retry
:class:`RetryableError` only. ``reason`` is a short machine-readable word that lands in the
``failures`` table beside the message.
"""
from __future__ import annotations


class AnimateAnyoneError(Exception):
    """Base of every error this project raises on purpose."""

    retryable = False

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or type(self).__name__

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class RetryableError(AnimateAnyoneError):
    """Transient: rate limits, server errors, network trouble. Another try may succeed."""

    retryable = True


class PermanentError(AnimateAnyoneError):
    """Retrying cannot help: the input itself is bad, missing or refused."""


class ConfigError(PermanentError):
    """``pipelines.yaml`` (or an override) is invalid; the message names file and field."""


class DownloadError(PermanentError):
    """A URL cannot be fetched and never will be (404, private, unsupported page)."""


class TransientDownloadError(RetryableError):
    """A URL could not be fetched this time (429, 5xx, connection refused, timeout)."""


class MediaError(PermanentError):
    """A file is not a usable video: empty, truncated, not a video at all, too short."""


def is_retryable(exc: BaseException) -> bool:
    """True only for errors that say another attempt may succeed."""
    return bool(getattr(exc, "retryable", False))
