"""The early-warning alert rules (cx-model.md, "Early-warning alerts"): one module per rule
behind one protocol (``streams.rules.base``), listed in order in ``streams.rules.registry``.

``streams.rules.customer.customer_alerts`` judges a customer's batch with the customer
rules; ``streams.rules.touchpoint_degraded.apply_health`` an instance's with
touchpoint_degraded. Pure like ``streams.core``: schemas and the standard library, time
passed in. docs/architecture.md says how to add a rule.
"""
