"""The sink's exceptions: each message is one line that says what is wrong and the fix.

``retryable`` tells the caller (the Faust agent's retry loop) whether waiting can help:
an unreachable server comes back, a wrong password or a missing table does not, and
retrying those forever would only hide the problem behind a stalled consumer.
"""

from __future__ import annotations


class SinkError(Exception):
    """Base of every error the sinks raise on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class SinkConfigError(SinkError):
    """The URL, credentials or database are wrong: fix the configuration, then restart."""

    retryable = False


class SinkUnavailable(SinkError):
    """ClickHouse cannot be reached right now (down, restarting, locked): retry later."""

    retryable = True


class SinkLocked(SinkUnavailable):
    """The chDB directory is held by another process (chDB allows one process per directory).

    ``holder_pid`` is the process that holds it, read from the directory's status file.
    """

    def __init__(self, message: str, *, holder_pid: int | None = None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class SinkWriteError(SinkError):
    """ClickHouse refused a statement (unknown table, bad value, too many parts...).

    Retryable unless the server's error code says the statement itself is wrong.
    """

    def __init__(self, message: str, *, retryable: bool = False, code: int | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code
