"""Faust codecs for table values that are pydantic models with a compact byte form.

The memory store keeps the decoded object, so an agent reads a customer's state without
parsing it; only the changelog (every assignment) and recovery (on start or rebalance)
pay for ``to_bytes`` / ``from_bytes``.
"""

from __future__ import annotations

from typing import Any, Protocol

from faust.serializers import codecs


class _Compact(Protocol):
    def to_bytes(self) -> bytes: ...


class CompactCodec(codecs.Codec):
    """Serialise with the model's own ``to_bytes``; parse with ``parse``."""

    def __init__(self, parse: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parse = parse

    def _dumps(self, obj: Any) -> bytes:
        data: bytes = obj.to_bytes()
        return data

    def _loads(self, s: bytes) -> Any:
        return self._parse(s)


def register_codec(name: str, parse: Any) -> str:
    """Register once per process (idempotent) and return the codec name."""
    if name not in codecs.codecs:
        codecs.register(name, CompactCodec(parse))
    return name
