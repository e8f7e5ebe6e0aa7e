"""Score customers: the customer-state table and the rows of every event and of what it did.

The agent reads the raw input (cx.touchpoints) and the events topic. A raw message is
validated first (``cxpulse.streams.agents.validate``): its events of customers of its
own partition are scored here, from it, with no hop (the raw topic is partitioned as the
customer table is, and the SDK sends every event to its customer's partition); the others
are sent on through the events topic, whose every message is a batch of one partition's
trusted records, and come back to the agent that owns their partition. The agent takes
several messages at once (up to ``TAKE_EVENTS`` events: streams/pipeline/takes.py)
and scores each customer of the take once, all its events of the take together: the work
done per customer (its state opened and closed, the sub-scores, the rule checks'
bookkeeping, the score update and its row, the changelog record) is then paid once per
take, not once per message, which under load is most of what an event costs. Feedback
text is analysed first, a take at a time, in the sentiment process (a child of the
worker: its models and CPU stay off the event loop): its sentiment and the model's
feedback topics it names (``moments.topics``); events without text never reach it. The
rows of touchpoint_events (every event of the take, scored or set aside), moments,
moment_factors and customer_scores go straight to the sink, and the new states to the
changelog, at checkpoints (streams/pipeline/checkpoint.py): rows durable first, then the
states that mark their events done, then the offsets. A take's rows of each table are
recorded at the end of the take in one part, which the sink writer prepares there (an
Arrow table for chDB) while they are fresh in the CPU's caches. A take's alerts leave on
cx.alerts at its end, in producer batches, and the broker has them before the offsets
are committed (their ids are deterministic: a replay repeats an alert, it never makes a
second one).

Each customer of a take is scored on its own: when the core raises for one customer (a
bug, a state it cannot handle), that customer's events go to the dead-letter topic with
the reason ``scoring failed: ...`` and their position in their envelope, and the other
customers go on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.scoring import CustomerState, Moment, ScoreUpdate
from cxpulse.streams import metrics
from cxpulse.streams.agents.alerting import record_time, send_alerts
from cxpulse.streams.agents.set_aside import Sources, dead_letter
from cxpulse.streams.agents.validate import validate
from cxpulse.streams.pipeline import rows_process, score_process
from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.pipeline.records import Event, decode_events, encode_events
from cxpulse.streams.pipeline.rows import (
    TakeRows,
    event_parts,
    events_in,
    moment_parts,
    score_parts,
)
from cxpulse.streams.pipeline.rows_process import RowsProcess
from cxpulse.streams.pipeline.score_process import (
    ScoreProcess,
    ScoringFailed,
    TakeScores,
    score_one,
)
from cxpulse.streams.pipeline.share import Share, split
from cxpulse.streams.pipeline.takes import run_takes, yielding
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.sentiment import SentimentAnalyzer, SentimentProcess, feedback_items
from cxpulse.streams.state import customer as customer_codec
from cxpulse.streams.state.store import table_store

log = logging.getLogger(__name__)

TABLE = "customer_state"
#: One changelog record in this many has its size observed (``metrics.STATE_BYTES``).
STATE_SAMPLE_EVERY = 50
#: The garbage collector's thresholds in a worker (``gc.set_threshold``), from its start.
GC_THRESHOLDS = (20_000, 50, 100)


def _freeze_the_heap() -> None:
    """Move the long-lived objects made at start (code, the model, Faust) out of the
    garbage collector's way, and collect the young generation less often: many short
    lived rows otherwise trigger collections that scan them again and again (measured
    with the models in-process: +45 % events/s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _log_scorer_warm_up(loaded: Any) -> None:
    if loaded.cancelled():
        return
    exc = loaded.exception()
    if exc is not None:
        log.error("the scoring process could not start: %s", exc)
    else:
        log.info("the experience step's customers are scored in their own process")


def _log_warm_up(loaded: Any) -> None:
    if loaded.cancelled():
        return
    exc = loaded.exception()
    if exc is not None:
        log.error("the sentiment process could not load its models: %s", exc)
    else:
        log.info("sentiment models loaded in %.1fs (in their own process)", loaded.result())


#: What scoring one customer's events of a take gives: the state before and after, the
#: fresh moments, the score update (None when the rows process works it out) and the
#: alerts.
Scored = tuple[CustomerState | None, CustomerState, list[Moment], ScoreUpdate | None, list[Alert]]


class Tally:
    """What a take's customers gave, wherever they were scored: its alerts (sent together
    at its end) and what the metrics count."""

    __slots__ = ("duplicates", "late", "moments_by_channel", "raised", "scores")

    def __init__(self) -> None:
        self.scores: list[float] = []
        self.raised: list[tuple[Alert, float]] = []
        self.moments_by_channel: Counter[str] = Counter()
        self.late = 0
        self.duplicates = 0


def observe_state_sizes(sizes: list[int]) -> None:
    """A sample of the sizes of the changelog records a commit sent: the states as they
    are stored, sealed already (encoding one to measure it cost more than the rest of its
    customer's update)."""
    for size in sizes[::STATE_SAMPLE_EVERY]:
        metrics.STATE_BYTES.observe(size)


def register(rt: Runtime, analyzer: SentimentAnalyzer | None = None) -> Any:
    """Register the table and the agent; returns the table (tests read it)."""
    customers: Any = rt.app.Table(
        TABLE,
        default=None,
        partitions=rt.settings.partitions,
        key_type=bytes,
        value_type=customer_codec.table_value_type(),
        help="customer_id -> CustomerState (experience score, episodes, alert memory)",
        **table_store(rt.settings),
    )
    # Feedback sentiment and topics: in a child process by default (cxpulse.streams.sentiment),
    # on a thread when an analyzer is given (tests).
    topics = {name: t.model_dump() for name, t in rt.model.feedback.topics.items()}
    child = SentimentProcess(topics) if analyzer is None else None
    read_texts: Any  # (text, language) pairs → (compound, topics) each, awaited
    if child is not None:
        read_texts = child.analyze_many
    else:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpulse-sentiment")
        given: Any
        if hasattr(analyzer, "analyze_many"):
            given = analyzer.analyze_many  # type: ignore[union-attr]
        else:  # an analyzer of sentiment only: no topics

            def given(items: Any) -> list[tuple[float | None, tuple[str, ...]]]:
                return [(s, ()) for s in analyzer.score_many(items)]  # type: ignore[union-attr]

        async def read_texts(items: Any) -> list[tuple[float | None, tuple[str, ...]]]:
            return await asyncio.get_running_loop().run_in_executor(thread, given, items)

    not_started = [True]
    # The scoring process (cxpulse.streams.pipeline.score_process), started with the
    # sentiment process during the first join.
    scorers: list[ScoreProcess] = []
    # how much of each take the scoring process is given (it follows both sides' speed)
    share = Share()

    @rt.app.on_partitions_revoked.connect
    async def warm_up_during_the_join(*_: Any, **__: Any) -> None:
        """Start the sentiment process and load its models while the consumer waits for
        its group join (the broker holds a first join for seconds): loaded lazily they
        stall the first batch with Chinese text for ~2 s. Revocation opens every
        rebalance, the first included; this runs once."""
        if not_started:
            not_started.clear()
            _freeze_the_heap()
            if child is not None:
                loaded = asyncio.wrap_future(child.warm_up())
                loaded.add_done_callback(_log_warm_up)
            rt.app.add_future(start_rows_process())
            if rt.settings.score_process and rt.settings.state_store == "rocksdb":
                scorer = ScoreProcess(rt.model, rt.settings.alerts_include_feedback_text)
                scorers.append(scorer)
                metrics.SCORE_PROCESS_SHARE.set(share.share)
                scorer.warm_up().add_done_callback(_log_scorer_warm_up)

    if child is not None:

        @rt.app.on_before_shutdown.connect
        async def stop_sentiment(*_: Any, **__: Any) -> None:
            child.close()

    # The rows process (chDB only: cxpulse.streams.pipeline.rows_process), started once
    # the writer has opened ClickHouse: during the first group join, with the sentiment
    # process (or, when ClickHouse was down then, once the first insert reached it);
    # takes before that build their rows here. Started as an app task (at Ready, after
    # recovery), it came up a second after the first take: a worker starting on the
    # benchmark's backlog of 20,000 events built half of their rows on the event loop.
    rows_in_child: list[RowsProcess] = []

    async def start_rows_process() -> None:
        if not rt.settings.rows_process:
            return
        await rt.writer.open()
        while not rt.writer.is_open:
            await asyncio.sleep(1.0)
        capabilities = rt.writer.arrow_capabilities()
        if capabilities is None:
            return
        process = RowsProcess(
            capabilities,
            rt.model,
            rt.writer.prepare_columns,
            rt.settings.rows_process_priority,
        )
        rows_in_child.append(process)
        process.warm_up()
        log.info("the experience step's rows are made into Arrow batches in their own process")

    @rt.app.on_before_shutdown.connect
    async def stop_rows_process(*_: Any, **__: Any) -> None:
        for process in rows_in_child:
            process.close()
        for scorer in scorers:
            scorer.close()

    async def score_texts(
        events: list[Event],
    ) -> tuple[dict[Any, float | None], dict[Any, tuple[str, ...]]]:
        """Sentiment and topics of the events' feedback texts, keyed by event id."""
        ids, items = feedback_items(events)
        if not items:
            return {}, {}
        started = time.perf_counter()
        read = await read_texts(items)
        metrics.SENTIMENT_SECONDS.observe(time.perf_counter() - started)
        sentiments = {i: r[0] for i, r in zip(ids, read, strict=True)}
        return sentiments, {i: r[1] for i, r in zip(ids, read, strict=True) if r[1]}

    def score_customer(
        customer_id: str,
        batch: list[Event],
        now: datetime,
        sentiments: dict[Any, float | None],
        topics: dict[Any, tuple[str, ...]],
        with_update: bool,
    ) -> tuple[int, Scored | None]:
        """Apply one customer's events: (duplicates, None) when nothing is new, else the
        state before and the new one, the fresh moments, the score update and the alerts.
        The state is not recorded here: see the agent."""
        before = checkpoints.get(customer_id.encode())
        duplicates, scored = score_one(
            before,
            batch,
            rt.model,
            now,
            sentiments,
            topics,
            include_feedback_text=rt.settings.alerts_include_feedback_text,
            with_update=with_update,
        )
        if scored is None:
            return duplicates, None
        state, fresh, update, alerts = scored
        return duplicates, (before, state, fresh, update, alerts)

    def score_elsewhere(
        scorer: ScoreProcess,
        by_customer: dict[str, list[Event]],
        sentiments: dict[Any, float | None],
        topics: dict[Any, tuple[str, ...]],
        now: datetime,
        with_updates: bool,
    ) -> tuple[dict[str, bytes | None], asyncio.Future[TakeScores | None]]:
        """Start scoring these customers in the scoring process: their states as the store
        holds them, and what gives their outcome (None: the process could not)."""
        held = {c: checkpoints.held(c.encode()) for c in by_customer}
        records = encode_events([e for batch in by_customer.values() for e in batch])
        scoring = asyncio.ensure_future(
            scorer.score(records, held, sentiments, topics, now, with_updates=with_updates)
        )
        return held, scoring

    async def record_elsewhere(
        scored: TakeScores,
        held: dict[str, bytes | None],
        by_customer: dict[str, list[Event]],
        tally: Tally,
        sources: Sources,
        moment_rows: TakeRows,
        score_rows: TakeRows,
        with_updates: bool,
    ) -> None:
        """Record what the scoring process gave, as ``score_here`` records its own work."""
        moments = sum(scored.by_channel.values())
        if moments:  # the rows process reads them as they came, the event loop need not
            counts = {"moments": moments, "moment_factors": scored.factors}
            moment_rows.add_encoded(scored.moments, score_process.MOMENTS.decode, counts)
        for outcome in scored.customers:
            customer_id = outcome.customer_id
            batch = by_customer[customer_id]
            if outcome.error is not None:
                await sources.set_aside(
                    rt,
                    batch,
                    ScoringFailed(outcome.error),
                    step="scoring",
                    subject=f"customer {customer_id}",
                )
                continue
            tally.duplicates += outcome.duplicates
            if outcome.packed is None:
                continue
            last = sources.message_of(batch[-1])  # the state's partition, as in the loop
            checkpoints.set_packed(
                customer_id.encode(),
                last.message.partition,
                outcome.packed,
                was=held[customer_id],
            )
            if not with_updates:  # the rows process works it out of the packed state
                score_rows.add([outcome.packed])
            if outcome.alerts:
                entered_at = record_time(last)
                tally.raised += [(alert, entered_at) for alert in outcome.alerts]
            tally.scores.append(outcome.score)
        if with_updates and scored.updates:  # none when no customer had a new event
            score_rows.add(score_process.UPDATES.decode(scored.updates))
        tally.moments_by_channel.update(scored.by_channel)
        tally.late += scored.late

    async def score_here(
        by_customer: dict[str, list[Event]],
        sentiments: dict[Any, float | None],
        topics: dict[Any, tuple[str, ...]],
        now: datetime,
        tally: Tally,
        sources: Sources,
        rows: tuple[TakeRows, TakeRows, TakeRows],
        with_update: bool,
    ) -> None:
        """Score these customers on the event loop, each on its own, and record what they
        gave: moments and score rows (``with_update``: the score updates' rows, made here),
        states in the checkpoint, alerts in ``tally``."""
        _, moment_rows, score_rows = rows
        async for customer_id, batch in yielding(by_customer.items()):
            try:
                seen_twice, scored = score_customer(
                    customer_id, batch, now, sentiments, topics, with_update
                )
            except Exception as exc:
                # One customer's failure must not drop the take: its events are set
                # aside (each with its own message's position), the other customers go on.
                await sources.set_aside(
                    rt, batch, exc, step="scoring", subject=f"customer {customer_id}"
                )
                continue
            tally.duplicates += seen_twice
            if scored is None:
                continue
            before, state, fresh, update, alerts = scored
            moment_rows.add(fresh)
            # A customer's events all come from its partition (of the raw topic, where
            # they were in it, or of the events topic, keyed by customer_id): its state
            # belongs to that partition's changelog.
            last = sources.message_of(batch[-1])
            packed = checkpoints.set(
                customer_id.encode(), last.message.partition, state, was=before
            )
            if update is not None:
                score_rows.add([update])
            else:  # the rows process works the score update out of the packed state
                score_rows.add([customer_codec.pack(state) if packed is None else packed])
            if alerts:
                entered_at = record_time(last)
                tally.raised += [(alert, entered_at) for alert in alerts]
            tally.scores.append(state.score)
            for moment in fresh:
                tally.moments_by_channel[moment.channel] += 1
                tally.late += moment.late

    async def handle(take: list[Any]) -> None:
        """A take of raw messages (validated here first: ``validate``, which sends on all
        but their local events) and of cx.events batch messages: each customer's events
        across the whole take scored at once (one state, one score update and one set of
        rule checks per customer, however many messages its events came in), its rows and
        new state recorded in the current checkpoint, its alerts sent."""
        raw = [m for m in take if m.message.topic == raw_topic]
        read = iter((await validate(rt, raw)).messages if raw else ())
        started = time.perf_counter()
        events: list[Event] = []
        sources = Sources()
        # The take's rows, recorded in the checkpoint in parts as they are made, as
        # columns built straight from the records (cxpulse.streams.pipeline.checkpoint).
        ingested_at = datetime.now(UTC)
        process = rows_in_child[0] if rows_in_child else None
        touchpoint_rows: TakeRows
        moment_rows: TakeRows
        score_rows: TakeRows
        if process is None:
            touchpoint_rows = TakeRows(
                checkpoints, partial(event_parts, ingested_at), size=events_in
            )
            moment_rows = TakeRows(checkpoints, moment_parts)
            score_rows = TakeRows(checkpoints, score_parts)
        else:  # made into batches in the rows process, from what the step holds
            touchpoint_rows = rows_process.event_rows(checkpoints, process, ingested_at)
            moment_rows = rows_process.moment_rows(checkpoints, process)
            score_rows = rows_process.score_rows(checkpoints, process)
        rows = (touchpoint_rows, moment_rows, score_rows)
        for message in take:
            records: bytes | None = message.value  # its events as msgpack records
            if message.message.topic == raw_topic:
                valid, rejected, decoded = next(read)  # its rejects dead-lettered already
                sources.add(message, valid, rejected)  # positions in the whole envelope
                records = None  # JSON: the local events are encoded for the child below
            else:
                decoded, rejected = decode_events(message.value)
                if rejected:  # validated upstream, yet not readable now (another version?)
                    for r in rejected:
                        metrics.EVENTS_INVALID.labels(r.kind).inc()
                        log.warning("unreadable event on the events topic: %s", r.reason)
                    await dead_letter(rt, message, rejected)
                sources.add(message, decoded, rejected)
            if not decoded:
                continue
            events += decoded
            # Every validated event's row, scored or not, in this checkpoint: durable
            # before the state that marks the event done.
            position = message.message.partition, message.message.offset
            if process is None:
                touchpoint_rows.add([(decoded, *position)])
            else:  # its records, decoded again in the child
                records = records or encode_events(decoded)
                touchpoint_rows.add([(records, *position, len(decoded))])
        # The events' last part too, before the take is scored: the rows process makes it
        # before the moments' and scores' parts, so the commit inserts touchpoint_events
        # as soon as it starts instead of after them (cxpulse.streams.pipeline.checkpoint).
        touchpoint_rows.close()
        if not events:
            return
        sentiments, topics = await score_texts(events)
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_customer[event.customer_id].append(event)
        now = datetime.now(UTC)
        tally = Tally()
        # A share of the customers is scored in the scoring process while the event loop
        # scores the others (a state store on disk; each customer's work is its own).
        if scorers and checkpoints.holds_packed:
            elsewhere, here = split(by_customer, share.share)
            handed = time.perf_counter()
            held, scoring = score_elsewhere(
                scorers[0], elsewhere, sentiments, topics, now, process is None
            )
            submitted = time.perf_counter()
            await score_here(here, sentiments, topics, now, tally, sources, rows, process is None)
            here_seconds = time.perf_counter() - submitted
            scored = await scoring
            if scored is not None:
                there_events = len(events) - sum(map(len, here.values()))
                metrics.SCORE_PROCESS_SHARE.set(
                    share.observe(
                        there_events,
                        submitted - handed + scored.seconds,
                        len(events) - there_events,
                        here_seconds,
                    )
                )
                await record_elsewhere(
                    scored, held, elsewhere, tally, sources, rows[1], rows[2], process is None
                )
            else:  # the process could not: scored here, nothing lost
                metrics.SCORE_PROCESS_FALLBACKS.inc()
                await score_here(
                    elsewhere, sentiments, topics, now, tally, sources, rows, process is None
                )
        else:
            await score_here(
                by_customer, sentiments, topics, now, tally, sources, rows, process is None
            )
        raised = tally.raised
        for made in rows:
            made.close()
        if raised:  # on cx.alerts now; the broker has them before the offsets commit
            checkpoints.sent(await send_alerts(rt, raised))
        for channel, n in tally.moments_by_channel.items():
            metrics.MOMENTS.labels(channel).inc(n)
        metrics.LATE_EVENTS.inc(tally.late)
        metrics.DUPLICATE_EVENTS.inc(tally.duplicates)
        metrics.SCORE_UPDATES.inc(len(tally.scores))
        metrics.SCORE.observe_many(tally.scores)
        metrics.BATCH_SECONDS.labels("experience").observe(time.perf_counter() - started)

    checkpoints = Checkpointer(
        customers,
        rt.writer.write,
        every_rows=rt.settings.sink_batch_size,
        every_seconds=rt.settings.sink_flush_seconds,
        prepare=rt.writer.prepare_columns,
        record_sizes=observe_state_sizes,
    )

    # The raw input and cx.events, read by one agent: the customers of a raw message's own
    # partition are scored from it (no hop), the others come back on cx.events.
    raw_topic = rt.raw.get_topic_name()
    scored_input = rt.app.topic(
        raw_topic, rt.events.get_topic_name(), key_serializer="raw", value_serializer="raw"
    )

    @rt.app.agent(scored_input, name="experience")
    async def experience(stream: Any) -> None:
        """Score takes of the raw input and cx.events; rows, states and offsets become
        durable at each checkpoint, in that order (streams/pipeline/takes.py,
        checkpoint.py)."""
        await run_takes(stream, checkpoints, handle)

    return customers
