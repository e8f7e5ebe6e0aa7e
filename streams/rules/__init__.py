"""The early-warning alert rules (cx-model.md, "Early-warning alerts"): one module per rule
behind one protocol (``cxpulse.streams.rules.base``), listed in order in
``cxpulse.streams.rules.registry``.

``cxpulse.streams.rules.customer.customer_alerts`` judges a customer's batch with the customer
rules; ``cxpulse.streams.rules.touchpoint_degraded.apply_health`` an instance's with
touchpoint_degraded. Pure like ``cxpulse.streams.core``: schemas and the standard library, time
passed in. docs/architecture.md says how to add a rule.
"""
