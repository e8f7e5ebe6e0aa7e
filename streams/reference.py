"""Reference tables for the operations guide, generated from the code itself.

``docs/operations.md`` embeds these; a test regenerates them and fails on any drift, so
a new setting, topic or metric cannot go undocumented.
"""

from __future__ import annotations

from cxpulse.streams import topics
from cxpulse.streams.app import TABLE_NAMES
from cxpulse.streams.settings import Settings


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else f"`{field.default}`"
        lines.append(f"| `CXPULSE_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(lines)


def topics_table() -> str:
    specs = topics.all_topics(Settings(), TABLE_NAMES)
    lines = ["| topic (default prefix) | partitions | config | holds |", "|---|---|---|---|"]
    for spec in specs:
        config = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        lines.append(f"| `{spec.name}` | CXPULSE_PARTITIONS | {config} | {spec.purpose} |")
    return "\n".join(lines)


def metrics_table() -> str:
    from prometheus_client.metrics import MetricWrapperBase

    from cxpulse.streams import metrics

    defined = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    rows = [
        (
            m._name + ("_total" if m._type == "counter" else ""),
            m._type,
            ", ".join(m._labelnames),
            m._documentation,
        )
        for m in defined
    ]
    rows += metrics.CollectionTimes.REFERENCE  # exported by a collector of its own
    rows += [
        (m.name, "histogram", "", m.documentation)
        for m in vars(metrics).values()
        if isinstance(m, metrics.BatchHistogram)
    ]
    for name, kind, labels, meaning in sorted(rows, key=lambda r: r[0].removesuffix("_total")):
        lines.append(f"| `{name}` | {kind} | {labels} | {meaning} |")
    return "\n".join(lines)


def render() -> str:
    return (
        "### Settings\n\n"
        + settings_table()
        + "\n\n### Topics\n\n"
        + topics_table()
        + "\n\n### Metrics\n\n"
        + metrics_table()
        + "\n"
    )


if __name__ == "__main__":
    print(render(), end="")
