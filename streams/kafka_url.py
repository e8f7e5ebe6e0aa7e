"""The forms of ``CXPULSE_KAFKA_URL``, read into (host, port) pairs. Standard library only:
settings parse the value the moment they are read, so a malformed one fails at start with
one line instead of as a client library's retry loop.

Accepted: ``host:port[,host:port...]`` (what Kafka's own tools take), the same behind
``kafka://`` (``kafka://h1:9092,h2:9092``), ``;`` instead of ``,``, and Faust's form
with the scheme repeated (``kafka://h1:9092;kafka://h2:9092``). ``[::1]:9092`` for IPv6;
a missing port is Kafka's 9092. No other scheme: TLS and SASL are chosen by
``CXPULSE_KAFKA_SECURITY_PROTOCOL``, never by the URL, so there is one way to say it.
"""

from __future__ import annotations

import re

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_PORT = 9092
EXPECTED = "give host:port[,host:port], e.g. kafka://broker-1:9092,broker-2:9092"

_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_SEPARATORS = re.compile(r"[,;]")


def parse_bootstrap(value: str) -> list[tuple[str, int]]:
    """Every bootstrap address of ``value`` as (host, port); ValueError (one line, saying
    what is wrong and the expected form) for anything else."""
    addresses = [_address(piece.strip()) for piece in _SEPARATORS.split(value)]
    found = [a for a in addresses if a is not None]
    if not found:
        raise ValueError(f"names no broker: {EXPECTED}")
    return found


def format_address(address: tuple[str, int]) -> str:
    """(host, port) as ``host:port`` (``[host]:port`` for an IPv6 address)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(piece: str) -> tuple[str, int] | None:
    if not piece:
        return None  # a trailing or doubled separator
    rest = piece
    if "://" in piece:
        scheme, rest = piece.split("://", 1)
        if scheme.lower() != "kafka":
            raise ValueError(
                f"the {scheme}:// scheme is not understood: write host:port (or "
                "kafka://host:port) and choose TLS or SASL with "
                f"CXPULSE_KAFKA_SECURITY_PROTOCOL ({', '.join(SECURITY_PROTOCOLS)})"
            )
    rest = rest.strip().rstrip("/")
    if "@" in rest:
        raise ValueError(
            "holds credentials: give them in CXPULSE_KAFKA_SASL_USERNAME and "
            "CXPULSE_KAFKA_SASL_PASSWORD (with CXPULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL)"
        )
    if any(c in rest for c in "/?#"):
        raise ValueError(f"{rest!r} is not host:port (no path or query): {EXPECTED}")
    if not rest:
        raise ValueError(f"{piece!r} names no host: {EXPECTED}")
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"{rest!r} is not [IPv6 address]:port: {EXPECTED}")
        port_text = after[1:] if after else None
        if not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise ValueError(f"{rest!r} has no IPv6 address between the brackets: {EXPECTED}")
    else:
        if rest.count(":") > 1:
            raise ValueError(f"{rest!r}: an IPv6 address goes in brackets, e.g. [::1]:9092")
        host, colon, port_text_ = rest.partition(":")
        port_text = port_text_ if colon else None
        if not host:
            raise ValueError(f"{rest!r} names no host: {EXPECTED}")
        if not _HOST.match(host):
            raise ValueError(f"{host!r} is not a host name or IP address: {EXPECTED}")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit():
        raise ValueError(f"the port of {rest!r} is not a number: {EXPECTED}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"the port of {rest!r} is not in 1..65535: {EXPECTED}")
    return host, port
