"""Faust codecs for table values with a compact byte form of their own.

The memory store keeps the decoded object, so an agent reads a key's state without
parsing it; only the changelog (every assignment) and recovery (on start or rebalance)
pay for ``dumps`` / ``loads`` (``cxpulse.streams.state.customer`` for the customer table).
A codec may encode in two stages, ``pack`` (a value to an intermediate form, cheap while
the value is fresh) and ``seal_many`` (those forms to their records, all in one call):
the checkpoint then packs each state as the step sets it (``forms``) and seals a cut's
states together when it commits (``encode_values``). A codec of one stage encodes a
cut's states one by one at the commit. A codec of two stages also reads its first stage
back (``unpack``) and takes a record back to it (``unseal``): the store on disk holds its
values in that form (``forms``; ``cxpulse.streams.state.store``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from faust.serializers import codecs


def _own_bytes(obj: Any) -> bytes:
    data: bytes = obj.to_bytes()
    return data


class CompactCodec(codecs.Codec):
    """Serialise with ``dumps`` (the value's own ``to_bytes`` by default), or in two
    stages, ``pack`` then ``seal_many``, when they are given (with ``unpack``, the first
    stage read back, and ``unseal``, a record's first stage or None for a record that has
    none); parse with ``parse``."""

    def __init__(
        self,
        parse: Callable[[bytes], Any],
        dumps: Callable[[Any], bytes] = _own_bytes,
        pack: Callable[[Any], Any] | None = None,
        seal_many: Callable[[Sequence[Any]], list[bytes]] | None = None,
        unpack: Callable[[Any], Any] | None = None,
        unseal: Callable[[bytes], Any | None] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if len({f is None for f in (pack, seal_many, unpack, unseal)}) > 1:
            raise ValueError("a codec of two stages needs pack, seal_many, unpack and unseal")
        self._parse = parse
        self._dumps_value = dumps
        self.pack = pack
        self._seal_many = seal_many
        self.unpack = unpack
        self.unseal = unseal

    def dumps_many(self, objs: Sequence[Any], packed: Sequence[Any] | None = None) -> list[bytes]:
        """``dumps`` of each of ``objs``; with two stages, sealed in one call, from
        ``packed`` when the caller packed them already (one per object)."""
        if self.pack is None or self._seal_many is None:
            return [self._dumps_value(obj) for obj in objs]
        if packed is None:
            packed = [self.pack(obj) for obj in objs]
        elif len(packed) != len(objs):
            raise ValueError(f"{len(packed)} packed values for {len(objs)} objects")
        return self._seal_many(packed)

    def _dumps(self, obj: Any) -> bytes:
        return self._dumps_value(obj)

    def _loads(self, s: bytes) -> Any:
        return self._parse(s)


def compact_value_type(
    name: str,
    parse: Callable[[bytes], Any],
    dumps: Callable[[Any], bytes] = _own_bytes,
    pack: Callable[[Any], Any] | None = None,
    seal_many: Callable[[Sequence[Any]], list[bytes]] | None = None,
    unpack: Callable[[Any], Any] | None = None,
    unseal: Callable[[bytes], Any | None] | None = None,
) -> type:
    """A table ``value_type`` whose values use the compact codec ``name``.

    Faust picks a table's serializers from its key/value types when the table is
    created, and builds the changelog topic (used to decode during recovery) right
    then: the codec must therefore come in through the type, not be set afterwards.
    ``pack`` and ``seal_many``: the two stages of ``dumps``, when it has them;
    ``unpack`` and ``unseal``: the first stage read back (see ``CompactCodec``).
    Faust reads ``_options.serializer`` and, after the codec decoded, calls
    ``from_data``, which here hands the decoded object back unchanged.
    """
    if name not in codecs.codecs:
        codecs.register(name, CompactCodec(parse, dumps, pack, seal_many, unpack, unseal))

    class _Options:
        serializer = name

    def from_data(cls: type, data: Any, preferred_type: Any = None) -> Any:
        return data

    return type(f"Compact[{name}]", (), {"_options": _Options, "from_data": classmethod(from_data)})


def _compact_codec(store: Any) -> CompactCodec | None:
    name = getattr(store, "value_serializer", None)
    codec = codecs.codecs.get(name) if isinstance(name, str) else None
    return codec if isinstance(codec, CompactCodec) else None


class Forms(NamedTuple):
    """A value's first stage and the ways to and from it (``forms``)."""

    pack: Callable[[Any], Any]
    unpack: Callable[[Any], Any]
    #: a record's first stage; None for a record that has none (an older format)
    unseal: Callable[[bytes], Any | None]


def forms(store: Any) -> Forms | None:
    """The first stage of the store's value codec and how to read it back, when it
    encodes in two stages (else None)."""
    codec = _compact_codec(store)
    if codec is None or codec.pack is None or codec.unpack is None or codec.unseal is None:
        return None
    return Forms(codec.pack, codec.unpack, codec.unseal)


def encode_values(
    store: Any, values: Sequence[Any], packed: Sequence[Any] | None = None
) -> list[bytes | None]:
    """What ``store._encode_value`` gives for each of ``values`` (the table's stored and
    changelog bytes), sealed in one call when the table's codec has two stages;
    ``packed``: the values' first stage (``Forms.pack``), when the caller made it already."""
    if not values:
        return []
    codec = _compact_codec(store)
    if codec is not None:
        return list(codec.dumps_many(values, packed))
    return [store._encode_value(value) for value in values]
