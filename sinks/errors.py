"""The sink's exceptions: each message is one line that says what is wrong and the fix.

``retryable`` tells the caller (the Faust agent's retry loop) whether waiting can help:
an unreachable server comes back, a wrong password or a missing table does not, and
retrying those forever would only hide the problem behind a stalled consumer.

``SinkDataError`` says more: the rows themselves are at fault (a value out of range or of
the wrong type), not the server or the statement. The same rows fail the same way on any
retry, but other rows would go in, so the sink writer isolates the refused rows from
their batch and keeps them aside (``cxpulse.sinks.writer``).
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


class SinkDataError(SinkWriteError):
    """ClickHouse, or the client encoding for it, refused the values of the rows.

    Never retryable. Raised for the client's encoding errors (clickhouse-driver's struct
    packing, Arrow's type conversion) and for the server codes in ``DATA_ERROR_CODES``.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message, retryable=False, code=code)


#: ClickHouse error codes that blame the inserted values, not the statement or server.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH (also clickhouse-driver's struct packing errors)
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DOESNT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        376,  # CANNOT_PARSE_UUID
        407,  # DECIMAL_OVERFLOW
        441,  # CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING
    }
)
