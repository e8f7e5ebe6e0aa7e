"""Bad input for the chaos suite's fuzz scenario, from a seeded generator: random bytes,
truncated, huge and deeply nested JSON, NaN/Infinity, bad UTF-8, wrong types, and batches
mixing valid events with invalid items.

``decode_message`` (what the validate agent runs) is the oracle of how many dead letters
a message must give; the generator only checks that every message it calls bad gives at
least one and that the valid events it holds are the ones it put there.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from cxpulse.schemas.envelope import decode_message

HUGE_BYTES = 900 * 1024  # under the producer's and consumer's 1 MiB request defaults


def _event_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def _wrong_types(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    bad = dict(doc)
    field = rng.choice(["event_id", "occurred_at", "customer_id", "channel", "outcome", "tier"])
    values: list[Any] = [123, 4.5, True, ["x"], {"y": 1}]
    if field != "tier":  # optional: null is a valid tier
        values.append(None)
    if field != "customer_id":  # any short string is a customer id
        values.append("not-a-" + field)
    bad[field] = rng.choice(values)
    return bad


def _nan(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    bad = dict(doc)
    value = rng.choice([float("nan"), float("inf"), float("-inf")])
    if rng.random() < 0.5:
        bad["details"] = {"kind": "web", "latency_ms": value, "http_status": 200}
        bad["channel"], bad["touchpoint"] = "web", "web.login"
    else:
        bad["occurred_at"] = value
    return bad


def _bad_item(rng: random.Random, doc: dict[str, Any]) -> Any:
    """One invalid item for a batch (built from a valid event it must not equal)."""
    pick = rng.randrange(6)
    if pick == 0:
        return _wrong_types(rng, doc)
    if pick == 1:
        return _nan(rng, doc)
    if pick == 2:
        bad = dict(doc)
        del bad[rng.choice(["event_id", "customer_id", "channel", "occurred_at"])]
        return bad
    if pick == 3:
        return rng.choice([0, -1, 3.14, "event", None, True, [], [1, 2]])
    if pick == 4:
        return dict(doc, unexpected_field="x" * rng.randrange(1, 100))
    return {"a": {"b": {"c": [1, {"d": None}]}}}


class Fuzzer:
    """Seeded bad messages. ``take(n)`` gives ``n`` valid events (recorded as published:
    ``Harness.take``) for mixed batches and as material to spoil."""

    def __init__(
        self, seed: int, take: Callable[[int], list[dict[str, Any]]], template: dict[str, Any]
    ) -> None:
        self.rng = random.Random(seed)
        self.take = take
        self.kinds: dict[str, int] = {}
        # Spoiled copies of a valid event that is never published itself.
        self._template = template
        self.valid_ids: set[str] = set()

    def _spoil_base(self) -> dict[str, Any]:
        doc = dict(self._template)
        doc["event_id"] = f"00000000-0000-4000-8000-{self.rng.getrandbits(48):012x}"
        return doc

    def message(self) -> bytes:
        rng = self.rng
        kind = rng.choice(
            [
                "random_bytes",
                "truncated",
                "huge",
                "nested",
                "nan",
                "bad_utf8",
                "wrong_types",
                "mixed_batch",
                "mixed_batch",
                "odd_json",
            ]
        )
        if kind == "huge" and rng.random() > 0.05:  # a few: they are 900 KiB each
            kind = "wrong_types"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        base = self._spoil_base()
        if kind == "random_bytes":
            return rng.randbytes(rng.randrange(1, 300))
        if kind == "truncated":
            raw = _event_json(base)
            return raw[: rng.randrange(1, len(raw) - 1)]
        if kind == "huge":
            return rng.choice(
                [
                    json.dumps({"event_id": "x" * HUGE_BYTES}).encode(),
                    b"[" + b"1," * (HUGE_BYTES // 2) + b"1]",
                    _event_json(dict(base, touchpoint="t" * HUGE_BYTES)),
                ]
            )
        if kind == "nested":
            depth = rng.randrange(1_100, 20_000)
            if rng.random() < 0.5:
                return b"[" * depth + b"]" * depth
            return b'{"a":' * depth + b"1" + b"}" * depth
        if kind == "nan":
            return _event_json(_nan(rng, base))
        if kind == "bad_utf8":
            raw = _event_json(base)
            at = raw.index(b'"customer_id": "') + 16
            cut = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])
            return raw[:at] + cut + raw[at:]
        if kind == "wrong_types":
            return _event_json(_wrong_types(rng, base))
        if kind == "mixed_batch":
            valid = self.take(rng.randrange(0, 8))
            self.valid_ids.update(d["event_id"] for d in valid)
            bad = [_bad_item(rng, self._spoil_base()) for _ in range(rng.randrange(1, 6))]
            items: list[Any] = valid + bad
            rng.shuffle(items)
            return json.dumps(items, allow_nan=True).encode()
        return rng.choice(
            [b"", b"null", b'"text"', b"42", b"[]", b"{}", b"\xef\xbb\xbf{", b"  ", b"true"]
        )

    def messages(self, bad_items: int) -> tuple[list[bytes], int]:
        """Messages holding at least ``bad_items`` invalid items, and the exact number of
        dead letters they must give (``decode_message``'s rejections)."""
        out: list[bytes] = []
        rejected = 0
        while rejected < bad_items:
            raw = self.message()
            events, rej = decode_message(raw)
            extra = {str(e.event_id) for e in events} - self.valid_ids
            if not rej or extra:
                raise AssertionError(f"fuzz: a bad message was accepted: {raw[:200]!r}")
            out.append(raw)
            rejected += len(rej)
        return out, rejected
