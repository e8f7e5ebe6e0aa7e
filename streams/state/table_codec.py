"""Faust codecs for table values with a compact byte form of their own.

The memory store keeps the decoded object, so an agent reads a key's state without
parsing it; only the changelog (every assignment) and recovery (on start or rebalance)
pay for ``dumps`` / ``loads`` (``cxpulse.streams.state.customer`` for the customer table).
A checkpoint encodes its states together (``encode_values``), in one call of the codec's
``dumps_many`` when it has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faust.serializers import codecs


def _own_bytes(obj: Any) -> bytes:
    data: bytes = obj.to_bytes()
    return data


class CompactCodec(codecs.Codec):
    """Serialise with ``dumps`` (the value's own ``to_bytes`` by default); parse with
    ``parse``."""

    def __init__(
        self,
        parse: Callable[[bytes], Any],
        dumps: Callable[[Any], bytes] = _own_bytes,
        dumps_many: Callable[[Sequence[Any]], list[bytes]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._parse = parse
        self._dumps_value = dumps
        self._dumps_many = dumps_many

    def dumps_many(self, objs: Sequence[Any]) -> list[bytes]:
        """``dumps`` of each of ``objs``, in one call where the codec has one."""
        if self._dumps_many is None:
            return [self._dumps_value(obj) for obj in objs]
        return self._dumps_many(objs)

    def _dumps(self, obj: Any) -> bytes:
        return self._dumps_value(obj)

    def _loads(self, s: bytes) -> Any:
        return self._parse(s)


def compact_value_type(
    name: str,
    parse: Callable[[bytes], Any],
    dumps: Callable[[Any], bytes] = _own_bytes,
    dumps_many: Callable[[Sequence[Any]], list[bytes]] | None = None,
) -> type:
    """A table ``value_type`` whose values use the compact codec ``name``.

    Faust picks a table's serializers from its key/value types when the table is
    created, and builds the changelog topic (used to decode during recovery) right
    then: the codec must therefore come in through the type, not be set afterwards.
    Faust reads ``_options.serializer`` and, after the codec decoded, calls
    ``from_data``, which here hands the decoded object back unchanged.
    """
    if name not in codecs.codecs:
        codecs.register(name, CompactCodec(parse, dumps, dumps_many))

    class _Options:
        serializer = name

    def from_data(cls: type, data: Any, preferred_type: Any = None) -> Any:
        return data

    return type(f"Compact[{name}]", (), {"_options": _Options, "from_data": classmethod(from_data)})


def encode_values(store: Any, values: Sequence[Any]) -> list[bytes | None]:
    """What ``store._encode_value`` gives for each of ``values`` (the table's stored and
    changelog bytes), with a compact codec's ``dumps_many`` when the table has one."""
    if not values:
        return []
    name = getattr(store, "value_serializer", None)
    codec = codecs.codecs.get(name) if isinstance(name, str) else None
    if isinstance(codec, CompactCodec):
        return list(codec.dumps_many(values))
    return [store._encode_value(value) for value in values]
