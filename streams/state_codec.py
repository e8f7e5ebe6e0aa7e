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


def compact_value_type(name: str, parse: Any) -> type:
    """A table ``value_type`` whose values use the compact codec ``name``.

    Faust picks a table's serializers from its key/value types when the table is
    created, and builds the changelog topic (used to decode during recovery) right
    then: the codec must therefore come in through the type, not be set afterwards.
    Faust reads ``_options.serializer`` and, after the codec decoded, calls
    ``from_data``, which here hands the decoded object back unchanged.
    """
    if name not in codecs.codecs:
        codecs.register(name, CompactCodec(parse))

    class _Options:
        serializer = name

    def from_data(cls: type, data: Any, preferred_type: Any = None) -> Any:
        return data

    return type(f"Compact[{name}]", (), {"_options": _Options, "from_data": classmethod(from_data)})
