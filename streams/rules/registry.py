"""The alert rules, in order, and where to find one by name.

The order is the order in which the customer rules are judged at each moment, and so the
order of their entries in ``alert_memory`` and of a moment's alerts: keep it. The names
are the vocabulary's (``cxpulse.schemas.vocabulary.RULES``, which the model file and the alert
contract validate against; schemas does not import streams, so the list is written there
once and checked here at import).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from cxpulse.schemas.vocabulary import RULES
from cxpulse.streams.rules.base import CustomerRule, Rule
from cxpulse.streams.rules.channel_hopping import ChannelHopping
from cxpulse.streams.rules.detractor import Detractor
from cxpulse.streams.rules.low_score import LowScore
from cxpulse.streams.rules.repeat_contact import RepeatContact
from cxpulse.streams.rules.repeated_failure import RepeatedFailure
from cxpulse.streams.rules.sharp_drop import SharpDrop
from cxpulse.streams.rules.touchpoint_degraded import RULE as TOUCHPOINT_DEGRADED


class Registry:
    """An ordered set of rules: the customer rules, judged by ``customer_alerts`` in this
    order, and the instance rule(s), judged by ``apply_health``."""

    def __init__(self, customer: Iterable[CustomerRule], instance: Iterable[Rule] = ()) -> None:
        self.customer: tuple[CustomerRule, ...] = tuple(customer)
        self.instance: tuple[Rule, ...] = tuple(instance)
        self._by_name: dict[str, Rule] = {}
        codes: set[str] = set()
        for rule in self:
            if rule.name in self._by_name:
                raise ValueError(f"rule {rule.name!r} registered twice")
            if rule.code in codes or "@" in rule.code:
                raise ValueError(f"rule {rule.name!r}: memory code {rule.code!r} is taken or has @")
            self._by_name[rule.name] = rule
            codes.add(rule.code)

    def __iter__(self) -> Iterator[Rule]:
        yield from self.customer
        yield from self.instance

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str) -> Rule:
        """The rule called ``name``; KeyError naming the known ones otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no rule {name!r}: the rules are {', '.join(self.names)}") from None

    def with_rule(self, rule: CustomerRule) -> Registry:
        """This registry with one more customer rule, judged after the others."""
        return Registry((*self.customer, rule), self.instance)


REGISTRY = Registry(
    customer=(
        LowScore(),
        SharpDrop(),
        RepeatedFailure(),
        RepeatContact(),
        ChannelHopping(),
        Detractor(),
    ),
    instance=(TOUCHPOINT_DEGRADED,),
)

if REGISTRY.names != RULES:
    raise RuntimeError(
        f"the registered rules {REGISTRY.names} are not the vocabulary's {RULES}: "
        "add the name to schemas/vocabulary.py (Rule) and the rule to streams/rules/registry.py"
    )
