"""An event id's forms inside the core are the ones ``uuid.UUID`` gives."""

from __future__ import annotations

import random
import uuid

from cxpulse.streams.core import dedup, ids


def sample_ids() -> list[uuid.UUID]:
    rnd = random.Random(37)
    edges = [uuid.UUID(int=0), uuid.UUID(int=1), uuid.UUID(int=(1 << 128) - 1)]
    made = [uuid.uuid4(), uuid.uuid1(), uuid.uuid5(uuid.NAMESPACE_URL, "cxpulse")]
    return edges + made + [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(500)]


def test_hex_of_is_the_uuids_hex() -> None:
    for event_id in sample_ids():
        assert ids.hex_of(event_id) == event_id.hex


def test_bytes_of_is_the_uuids_bytes() -> None:
    for event_id in sample_ids():
        assert ids.bytes_of(event_id) == event_id.bytes


def test_the_dedup_hash_is_taken_of_the_uuids_bytes() -> None:
    import hashlib

    for event_id in sample_ids():
        expected = hashlib.blake2b(event_id.bytes, digest_size=6).digest()
        assert dedup.id_hash(event_id) == expected
