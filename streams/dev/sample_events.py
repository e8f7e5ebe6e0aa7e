"""A small built-in sample of touchpoint events, for ``cxpulse demo`` and tests.

Why a scripted story rather than random noise: a demo should show what cxpulse is for,
so the sample has moments worth noticing: an ATM that keeps failing for several
customers (a degraded touchpoint), a tier-A customer whose card is swallowed and who then
waits on the phone (an experience going bad fast), Chinese and English feedback, and
ordinary successes around them. Everything is derived from ``seed`` and ``now`` only,
so the same arguments give the same events (ids included).
"""

# Chinese feedback uses full-width punctuation, as real Chinese text does.
# ruff: noqa: RUF001

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# (customer, tier, segment, language of their feedback)
CUSTOMERS: tuple[tuple[str, str, str, str], ...] = (
    ("C-1001", "A", "retail_banking", "en"),
    ("C-1002", "B", "retail_banking", "zh"),
    ("C-1003", "C", "retail", "en"),
    ("C-1004", "A", "retail_banking", "en"),
    ("C-1005", "B", "retail", "zh"),
    ("C-1006", "C", "retail_banking", "en"),
    ("C-1007", "A", "retail", "zh"),
)

DEGRADED_ATM = "ATM-0042"

# Routine moments per channel: (touchpoint, journey stage, intent, details maker)
_ROUTINE: dict[str, list[tuple[str, str, str]]] = {
    "web": [
        ("web.login", "post_purchase", "account_access"),
        ("web.transfer", "purchase", "money_transfer"),
        ("web.search", "pre_purchase", "product_search"),
        ("web.product_page", "pre_purchase", "product_research"),
    ],
    "app": [
        ("app.login", "post_purchase", "account_access"),
        ("app.payment", "purchase", "bill_payment"),
        ("app.order_tracking", "post_purchase", "order_status"),
    ],
    "call_center": [
        ("call_center.banking_support", "post_purchase", "account_question"),
        ("call_center.order_support", "post_purchase", "order_status"),
    ],
    "store": [
        ("store.branch_visit", "post_purchase", "account_question"),
        ("store.checkout", "purchase", "in_store_purchase"),
    ],
    "atm": [
        ("atm.withdrawal", "post_purchase", "cash_withdrawal"),
        ("atm.balance", "post_purchase", "balance_check"),
    ],
}


def _details(channel: str, rng: random.Random, *, slow: bool = False) -> dict[str, Any]:
    """Plausible effort measurements for a channel; ``slow`` makes them hurt."""
    factor = 4.0 if slow else 1.0
    if channel == "web":
        return {
            "kind": "web",
            "latency_ms": round(rng.uniform(300, 1400) * factor, 1),
            "http_status": 200,
            "steps": rng.randint(1, 4),
        }
    if channel == "app":
        return {
            "kind": "app",
            "latency_ms": round(rng.uniform(200, 900) * factor, 1),
            "http_status": 200,
            "os": rng.choice(["ios", "android"]),
            "app_version": "5.12.0",
        }
    if channel == "call_center":
        return {
            "kind": "call_center",
            "wait_seconds": round(rng.uniform(20, 110) * factor, 1),
            "handle_seconds": round(rng.uniform(120, 420), 1),
            "transfers": 0,
            "ivr_steps": rng.randint(1, 3),
            "queue": "general",
        }
    if channel == "store":
        return {
            "kind": "store",
            "queue_seconds": round(rng.uniform(60, 400) * factor, 1),
            "service_seconds": round(rng.uniform(90, 300), 1),
            "terminal_id": f"POS-{rng.randint(1, 9):02d}",
        }
    return {
        "kind": "atm",
        "response_ms": round(rng.uniform(1200, 2600) * factor, 1),
        "cash_dispensed": True,
    }


class _Builder:
    """Collects events with ids and times drawn from one seeded generator."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.profiles = {c: (tier, seg, lang) for c, tier, seg, lang in CUSTOMERS}

    def add(
        self,
        customer: str,
        minutes_ago: float,
        channel: str,
        touchpoint: str,
        stage: str,
        outcome: str,
        *,
        intent: str | None = None,
        instance: str | None = None,
        details: dict[str, Any] | None = None,
        feedback: dict[str, Any] | None = None,
        journey: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        tier, segment, _ = self.profiles[customer]
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "schema_version": 1,
            "occurred_at": (self.now - timedelta(minutes=minutes_ago)).isoformat(),
            "customer_id": customer,
            "channel": channel,
            "touchpoint": touchpoint,
            "journey_stage": stage,
            "outcome": outcome,
            "tier": tier,
            "segment": segment,
            "details": details if details is not None else _details(channel, self.rng),
        }
        optional = {
            "touchpoint_instance": instance,
            "intent": intent,
            "journey_id": journey,
            "feedback": feedback,
            "attributes": attributes,
        }
        event.update({k: v for k, v in optional.items() if v is not None})
        self.events.append(event)


def sample_events(seed: int = 0, now: datetime | None = None) -> list[dict[str, Any]]:
    """About 80 valid events from all five channels over the three hours before ``now``.

    ``now`` defaults to a fixed instant (not the clock) so that the default call is
    deterministic too; the demo passes the real time so that its events are recent.
    """
    now = now or datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    b = _Builder(seed, now)
    rng = b.rng

    # Routine background: each customer does a few ordinary things, spread over 3 hours.
    for customer, _tier, _segment, _lang in CUSTOMERS:
        for _ in range(7):
            channel = rng.choice(list(_ROUTINE))
            touchpoint, stage, intent = rng.choice(_ROUTINE[channel])
            instance = f"ATM-00{rng.randint(60, 79)}" if channel == "atm" else None
            outcome = "success" if rng.random() > 0.1 else "abandoned"
            b.add(
                customer,
                rng.uniform(60, 180),
                channel,
                touchpoint,
                stage,
                outcome,
                intent=intent,
                instance=instance,
            )

    # A degraded ATM: one machine fails for several customers within half an hour.
    jam = {"kind": "atm", "response_ms": 9000.0, "error_code": "E-CASH-JAM"}
    jam_off = {**jam, "cash_dispensed": False}
    for customer, minutes_ago in (
        ("C-1004", 44),
        ("C-1005", 41),
        ("C-1001", 38),
        ("C-1001", 37),
        ("C-1001", 35),
        ("C-1006", 31),
        ("C-1004", 27),
    ):
        b.add(
            customer,
            minutes_ago,
            "atm",
            "atm.withdrawal",
            "post_purchase",
            "failure",
            intent="cash_withdrawal",
            instance=DEGRADED_ATM,
            details=jam_off,
            attributes={"branch": "117"},
        )
    b.add(
        "C-1004",
        25,
        "atm",
        "atm.withdrawal",
        "post_purchase",
        "success",
        intent="cash_withdrawal",
        instance="ATM-0077",
    )

    # Tier A customer C-1001: card swallowed, then a long, transferred hotline call.
    b.add(
        "C-1001",
        34,
        "atm",
        "atm.withdrawal",
        "post_purchase",
        "failure",
        intent="card_retained",
        instance=DEGRADED_ATM,
        details={"kind": "atm", "response_ms": 12000.0, "error_code": "E-CARD-RETAINED"},
        journey="J-1001-card",
    )
    b.add(
        "C-1001",
        30,
        "call_center",
        "call_center.card_hotline",
        "post_purchase",
        "failure",
        intent="card_retained",
        journey="J-1001-card",
        details={
            "kind": "call_center",
            "wait_seconds": 640.0,
            "handle_seconds": 510.0,
            "transfers": 2,
            "ivr_steps": 6,
            "queue": "cards",
            "agent_id": "AG-207",
        },
        feedback={
            "csat": 1,
            "nps": 2,
            "text": "The ATM swallowed my card and I waited over ten minutes on the phone, "
            "then got transferred twice. Terrible.",
            "language": "en",
        },
    )
    b.add(
        "C-1001",
        12,
        "store",
        "store.branch_visit",
        "post_purchase",
        "success",
        intent="card_retained",
        journey="J-1001-card",
        instance="BR-117",
        feedback={"csat": 4, "text": "The branch staff sorted it out quickly.", "language": "en"},
    )

    # C-1002 (Chinese feedback): a failing app payment, then good service on the phone.
    for minutes_ago in (55, 52):
        b.add(
            "C-1002",
            minutes_ago,
            "app",
            "app.payment",
            "purchase",
            "failure",
            intent="bill_payment",
            details={"kind": "app", "latency_ms": 7800.0, "http_status": 503, "os": "android"},
        )
    b.add(
        "C-1002",
        50,
        "app",
        "app.payment",
        "purchase",
        "abandoned",
        intent="bill_payment",
        details={"kind": "app", "latency_ms": 5200.0, "http_status": 200, "os": "android"},
        feedback={"nps": 3, "text": "转账一直失败，等了好久，太失望了。", "language": "zh"},
    )
    b.add(
        "C-1002",
        20,
        "call_center",
        "call_center.banking_support",
        "post_purchase",
        "success",
        intent="bill_payment",
        feedback={"csat": 5, "text": "客服很耐心，问题很快就解决了，谢谢！", "language": "zh"},
    )

    # C-1003 (retail, tier C): an abandoned web checkout, then the app works.
    b.add(
        "C-1003",
        70,
        "web",
        "web.checkout",
        "purchase",
        "abandoned",
        intent="online_purchase",
        details={"kind": "web", "latency_ms": 4100.0, "http_status": 200, "steps": 9},
        feedback={
            "ces": 6,
            "text": "Checkout asked for the same details three times.",
            "language": "en",
        },
    )
    b.add(
        "C-1003",
        64,
        "app",
        "app.checkout",
        "purchase",
        "success",
        intent="online_purchase",
        feedback={"ces": 2},
    )
    b.add(
        "C-1003",
        15,
        "store",
        "store.returns_desk",
        "post_purchase",
        "success",
        intent="product_return",
        instance="STORE-08",
        feedback={"nps": 9, "text": "Quick and friendly returns desk.", "language": "en"},
    )

    # Happy voices, so the sample is not all complaints.
    b.add(
        "C-1004",
        8,
        "web",
        "web.transfer",
        "purchase",
        "success",
        intent="money_transfer",
        feedback={"nps": 10, "text": "Smooth transfer, thanks!", "language": "en"},
    )
    b.add(
        "C-1007",
        6,
        "app",
        "app.order_tracking",
        "post_purchase",
        "success",
        intent="order_status",
        feedback={"csat": 5, "text": "手机App很方便，物流信息很清楚。", "language": "zh"},
    )
    b.add(
        "C-1005",
        5,
        "store",
        "store.checkout",
        "purchase",
        "success",
        intent="in_store_purchase",
        instance="STORE-03",
        details={"kind": "store", "queue_seconds": 1500.0, "service_seconds": 240.0},
        feedback={"csat": 2, "text": "排队排了二十多分钟，收银台只开了一个。", "language": "zh"},
    )
    b.add(
        "C-1006",
        3,
        "call_center",
        "call_center.banking_support",
        "post_purchase",
        "success",
        intent="account_question",
        feedback={"ces": 2, "nps": 8},
    )

    b.events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return b.events


def sample_invalid() -> list[bytes]:
    """Raw messages a careless producer might send, one problem each, for the DLQ path.

    Each is one whole Kafka message (so each yields exactly one dead letter): a missing
    field, an unknown channel, details of another channel, a value of the wrong type, a
    time without a timezone, and bytes that are not JSON.
    """
    base: dict[str, Any] = {
        "event_id": "7d0c1c7e-2b8e-4c35-9a55-3d7f3c9e1a01",
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": "C-1001",
        "channel": "web",
        "touchpoint": "web.login",
        "journey_stage": "post_purchase",
        "outcome": "success",
    }

    def variant(**changes: Any) -> dict[str, Any]:
        doc = {k: v for k, v in base.items() if k not in changes or changes[k] is not _DROP}
        doc.update({k: v for k, v in changes.items() if v is not _DROP})
        return doc

    docs = [
        variant(customer_id=_DROP),  # missing field
        variant(event_id="7d0c1c7e-2b8e-4c35-9a55-3d7f3c9e1a02", channel="fax"),  # bad enum
        variant(  # details of another channel
            event_id="7d0c1c7e-2b8e-4c35-9a55-3d7f3c9e1a03",
            details={"kind": "atm", "error_code": "E-CASH-JAM"},
        ),
        variant(  # wrong type
            event_id="7d0c1c7e-2b8e-4c35-9a55-3d7f3c9e1a04", feedback={"nps": "ten"}
        ),
        variant(  # no timezone: ambiguous across regions
            event_id="7d0c1c7e-2b8e-4c35-9a55-3d7f3c9e1a05", occurred_at="2026-11-20T09:30:00"
        ),
    ]
    raw = [json.dumps(doc, ensure_ascii=False).encode() for doc in docs]
    raw.append(b'{"event_id": "7d0c1c7e-2b8e-4c35-9a55-3d7f3c9e1a06", "channel": "web", ')
    return raw


_DROP: Any = object()
