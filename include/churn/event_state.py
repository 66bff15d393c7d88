"""The streaming job's per-customer state: events de-duplicated across micro-batches, and each event's
aggregates "since day d - k" as of its event time (Spark's ``applyInPandasWithState``, which runs on
Glue 5's Spark 3.5 and on the local Spark 4).

An event's features ("features as of each event", ``churn.features.event_features``) are the
customer's latest snapshot ``s`` (the state at the start of day ``s``, at most ``K`` =
``max_snapshot_age_days`` old) plus every event of the customer from the start of day ``s`` up to
and including this one, in event-time order: by ``(event_ts, event_id)``. Which snapshot an event
meets is decided on the driver, where the daily snapshots are (``features/``, published by the
features job). So this operator gives every event on day ``d``, for each ``k = 0..K``, the
aggregates of the customer's events since the start of day ``d - k`` (``AGGREGATES``), and the
driver adds those of ``k = d - s`` to snapshot ``s``. Sums run in event-time order, so they are
the same floating-point numbers whichever path computes them.

What an event is added to is what the job knows when its micro-batch runs: the customer's events of
earlier micro-batches and of its own. An event that arrives after a later one of the same customer
was scored counts for the events after it from then on; the score already written stays (it was the
answer at the time). ``churn.features.event_features`` takes the micro-batch of each event
(``known_by``) to give exactly these vectors from a static table.

Across micro-batches, per customer, with no Spark watermark (Spark drops input rows
older than its watermark before a stateful operator sees them, silently: here nothing is dropped):

* **Duplicates.** An event id already in the state, or earlier in the same micro-batch, is a
  producer's resend: it gets ``reason = "duplicate_event"`` and is not scored again.
* **Late events.** The customer's watermark is the newest event time of the customer's earlier
  micro-batches minus the allowed lateness. An event older than that gets ``reason =
  "late_event"``: it could be a resend of an event the state has forgotten, and it would change
  features already written. The job writes it to the errors prefix with its record.
* **Unknown customers.** With ``known_customers`` (the customers of the published feature
  snapshots), an event of any other customer gets ``reason = "unknown_customer"`` and never enters
  the state: it could not be scored (there is no snapshot to add its aggregates to), and random ids
  would otherwise grow the state without bound.
* **Per-customer cap.** At most ``max_events_per_customer`` events of one customer are kept; an
  event that would go beyond it gets ``reason = "customer_event_limit"`` (it is written to the
  errors with its record, not scored: its features would miss the events that were not kept).
* **What is kept.** The events of the days a snapshot in use can need (the customer's newest day
  minus ``K``) and of the lateness window (to recognise resends). Once the wall clock is past the
  customer's newest event by ``K + 1`` days and the lateness, no on-time event can need any of it: a
  customer whose last event arrived more than ``idle_timeout_ms`` ago is then removed, the next time
  its bucket has events (in a replay of old events the wall clock is far ahead: the state then
  lasts as long as the customer is idle for less than ``idle_timeout_ms``). There is no Spark
  timeout: with one, every micro-batch runs the function a second time in each state partition,
  for the keys that timed out, which cost 0.15-0.2 s a batch even when none had.

Rows that failed validation (``reason`` set before this operator) pass through unchanged.

Each call costs O(n log n) in the customer's kept events: the aggregates of the new events come from
one pass over the customer's events in event-time order, from ``K`` days before the oldest new one,
with one running sum per start day (so the sums are still folded in event-time order from 0.0), not
from a pass over the history per event. The first output row of each call carries the bucket's
state size after it (``state_size``: "<bucket>,<customers>,<events>"), which the driver reports in
``progress.json``.

Spark calls the function once per key and micro-batch, at about 3 ms a call in pyspark's worker
(measured: 4,909 events of as many customers took 18 s), so the key is not the customer but a
bucket of customers (``BUCKET``: a hash of the customer id modulo ``--state-buckets``), and every
rule applies per customer inside it. A bucket's state is read and written whole when it has
events, so more buckets mean less state handled per batch and more calls. Spark converts every
column between Arrow and pandas at each call, so the columns are few: in, ``INPUT_COLUMNS`` (the
record's other fields travel in ``payload``, a JSON string the driver reads); out,
``OUTPUT_SCHEMA``, the aggregates packed in one string (``unpack`` spreads them into columns).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

US_PER_DAY = 86_400_000_000
DUPLICATE, LATE = "duplicate_event", "late_event"
UNKNOWN_CUSTOMER, EVENT_LIMIT = "unknown_customer", "customer_event_limit"
DEFAULT_MAX_EVENTS_PER_CUSTOMER = 10_000
AGGREGATES = ("usage_minutes", "active_days", "tickets", "payment_failures", "downgrades", "upgrades")
LAST_USAGE = "last_usage_days_ago"  # days from the newest usage event at or before this one (within K days)
STATE_SCHEMA = ("customer_ids array<string>, event_ids array<string>, event_us array<bigint>, "
                "event_types array<string>, event_values array<double>, arrived_ms array<bigint>")
BUCKET = "state_bucket"  # the operator's key: a hash of the customer id modulo the number of buckets
INPUT_COLUMNS = (BUCKET, "customer_id", "event_id", "event_us", "event_type", "value", "reason", "payload")
OUTPUT_SCHEMA = "payload string, reason string, aggregates string, state_size string"


def _keep_group_offsets_integral() -> None:
    """Work around pyspark 4.1 + pyarrow 26 in ``applyInPandasWithState``'s Python worker.

    The worker reads each group's row range (``startOffset``, ``numRows``) from a struct column whose
    padding rows are null; pyarrow (26 here, 17 on Glue 5) converts the int fields of such a struct
    to floats, and pyspark 4.1's ``RecordBatch.slice`` refuses them ("'float' object cannot be
    interpreted as an integer"), so every stateful query fails. Feature-detected (the conversion is
    probed), and harmless where ints come back anyway. Runs where this module is imported, in the
    worker too (the state function's code refers to it)."""
    try:
        import pyarrow as pa
        from pyspark.sql.pandas.serializers import ApplyInPandasWithStateSerializer
    except ImportError:
        return
    if getattr(ApplyInPandasWithStateSerializer, "_churn_integral_offsets", False):
        return
    probe = pa.StructArray.from_arrays([pa.array([0, None], pa.int32())], names=["startOffset"],
                                       mask=pa.array([False, True]))
    if isinstance(probe.to_pandas().iloc[0]["startOffset"], int):
        return
    original = ApplyInPandasWithStateSerializer.arrow_to_pandas

    def arrow_to_pandas(self, arrow_column, *args, **kwargs):  # (column, idx, ...) in pyspark 4, (column) in 3.5
        converted = original(self, arrow_column, *args, **kwargs)
        if pa.types.is_struct(arrow_column.type) and arrow_column.type.get_field_index("startOffset") >= 0:
            converted = converted.map(lambda info: info if info is None else {
                **info, "startOffset": int(info["startOffset"]), "numRows": int(info["numRows"])})
        return converted

    ApplyInPandasWithStateSerializer.arrow_to_pandas = arrow_to_pandas
    ApplyInPandasWithStateSerializer._churn_integral_offsets = True


_keep_group_offsets_integral()


def aggregate_columns(max_age_days: int) -> list[str]:
    """``<aggregate>_since_<k>d`` for k = 0..K, then ``last_usage_days_ago``."""
    return [f"{name}_since_{k}d" for k in range(max_age_days + 1) for name in AGGREGATES] + [LAST_USAGE]


def unpack(aggregates, max_age_days: int) -> dict:
    """The ``aggregates`` column of the output (strings, None where not scored) as float arrays by
    ``aggregate_columns`` name (NaN where not scored)."""
    import numpy as np

    columns = aggregate_columns(max_age_days)
    empty = [float("nan")] * len(columns)
    rows = [[float(v) if v else float("nan") for v in text.split(",")] if isinstance(text, str) else empty
            for text in aggregates]
    matrix = np.array(rows, dtype=float).reshape(len(rows), len(columns))
    return {name: matrix[:, i] for i, name in enumerate(columns)}


def contribution(event_type: str, value: float) -> tuple[float, int, int, int, int, int]:
    """What one event adds: (usage minutes, is usage, ticket, payment failure, downgrade, upgrade)."""
    usage = event_type == "usage"
    return (
        value if usage else 0.0,
        int(usage),
        int(event_type == "support_ticket"),
        int(event_type == "payment_failure"),
        int(event_type == "plan_change" and value < 0),
        int(event_type == "plan_change" and value > 0),
    )


def as_of(history: list[tuple], positions: list[int], max_age_days: int) -> dict[int, list[float | None]]:
    """The aggregates of ``aggregate_columns`` for the events at ``positions`` (ascending) of
    ``history`` (tuples (time, id, type, value, ...) sorted by (time, id)): for each, over the events
    at or before it on days ``d - k`` .. ``d``.

    One pass from the first event ``K`` days before the first position's day, with a running sum per
    start day ``D`` (the sum of the events from the start of day ``D`` on, folded in event-time order
    from 0.0, as ``churn.features.event_features`` folds them): O((n + positions) x K), not O(n^2)."""
    if not positions:
        return {}
    first_day = history[positions[0]][0] // US_PER_DAY - max_age_days
    begin = bisect.bisect_left(history, (first_day * US_PER_DAY,))
    sums: dict[int, list] = {}  # start day -> [minutes, tickets, failures, down, up]
    usage_days: list[int] = []  # days with usage so far, ascending
    wanted = iter(positions)
    target = next(wanted)
    out: dict[int, list[float | None]] = {}
    for position in range(begin, positions[-1] + 1):
        when, _, event_type, value, *_ = history[position]
        day = when // US_PER_DAY
        for start in [d for d in sums if d < day - max_age_days]:
            del sums[start]  # no later event (on day >= this one) looks back that far
        for start in range(day - max_age_days, day + 1):
            if start not in sums:
                sums[start] = [0.0, 0, 0, 0, 0]  # the events before this one are all on earlier days
        minutes, usage, ticket, failure, down, up = contribution(event_type, value)
        if usage and (not usage_days or usage_days[-1] != day):
            usage_days.append(day)
        for start in range(day - max_age_days, day + 1):
            row = sums[start]
            row[0] += minutes
            row[1] += ticket
            row[2] += failure
            row[3] += down
            row[4] += up
        if position != target:
            continue
        values: list[float | None] = []
        for k in range(max_age_days + 1):
            total_minutes, tickets, failures, downs, ups = sums[day - k]
            active = sum(1 for used in usage_days[-(k + 1):] if used >= day - k)
            values += [total_minutes, float(active), float(tickets), float(failures), float(downs), float(ups)]
        recent = usage_days[-1] if usage_days and usage_days[-1] >= day - max_age_days else None
        values.append(float(day - recent) if recent is not None else None)
        out[position] = values
        target = next(wanted, None)
    return out


def _customers(known) -> frozenset | set | None:
    """``known_customers`` as a set: a pyspark Broadcast's value (read in the worker), or as given."""
    return known.value if hasattr(known, "value") and not isinstance(known, (set, frozenset)) else known


def state_function(max_age_days: int, lateness_ms: int, idle_timeout_ms: int,
                   max_events_per_customer: int = DEFAULT_MAX_EVENTS_PER_CUSTOMER, known_customers=None):
    """The ``applyInPandasWithState`` function (key: a bucket of customers, ``BUCKET``; input:
    ``INPUT_COLUMNS``; output: ``OUTPUT_SCHEMA``; state: ``STATE_SCHEMA``, the bucket's customers'
    events as parallel arrays, each with the processing time it arrived at; ``NoTimeout``). Every
    rule applies per customer. ``known_customers`` (a set of customer ids, or a pyspark Broadcast of
    one; None: every customer is known) is what ``unknown_customer`` is decided by;
    ``max_events_per_customer`` bounds the events kept per customer."""
    import pandas as pd

    lateness_us = lateness_ms * 1000
    forget_after_us = (max_age_days + 1) * US_PER_DAY + lateness_us

    def kept(history: list, newest: int | None = None) -> list:
        """What later events can still need: the days of the snapshots in use and the lateness window
        (as of the newest event, or of ``newest`` if that is later)."""
        newest = max([event[0] for event in history] + ([newest] if newest is not None else []))
        first_day = newest // US_PER_DAY - max_age_days
        return [event for event in history if event[0] // US_PER_DAY >= first_day or event[0] >= newest - lateness_us]

    def load(state) -> dict[str, list]:
        """The bucket's customers' histories: (event_us, event_id, event_type, value, arrived_ms)."""
        customers: dict[str, list] = {}
        if state.exists:
            for customer, event_id, when, kind, value, arrived in zip(*state.get):
                customers.setdefault(customer, []).append((when, event_id, kind, value, arrived))
        return customers

    def save(state, customers: dict[str, list]) -> None:
        rows = [(customer, event_id, when, kind, value, arrived) for customer, history in customers.items()
                for when, event_id, kind, value, arrived in history]
        if rows:
            state.update(tuple(list(column) for column in zip(*rows)))
        else:
            state.remove()

    def expired(history: list, now_ms: int) -> bool:
        """Idle for ``idle_timeout_ms``, and no on-time event can need any of its history any more."""
        return (now_ms - max(event[4] for event in history) > idle_timeout_ms
                and now_ms * 1000 - max(event[0] for event in history) > forget_after_us)

    def customer_batch(history: list, rows: list[int], columns: dict, now_ms: int, reasons: list,
                       outputs: list) -> list:
        """One customer's events of this micro-batch against its history; returns the new history."""
        times, ids = columns["event_us"], columns["event_id"]
        seen = {event[1] for event in history}
        watermark_us = max(event[0] for event in history) - lateness_us if history else None
        # The cap counts what stays after this batch: the history as of the batch's newest event.
        newest_us = max(int(times[row]) for row in rows)
        room = max_events_per_customer - (len(kept(history, newest_us)) if history else 0)
        new = []
        for row in sorted(rows, key=lambda i: (times[i], ids[i])):
            if ids[row] in seen:
                reasons[row] = DUPLICATE
            elif watermark_us is not None and times[row] < watermark_us:
                reasons[row] = LATE
            elif len(new) >= room:
                reasons[row] = EVENT_LIMIT
            else:
                seen.add(ids[row])
                event = (int(times[row]), ids[row], columns["event_type"][row], float(columns["value"][row]), now_ms)
                new.append((event, row))
        if not new:
            return history
        history = sorted(history + [event for event, _ in new])
        positions = {event[:2]: i for i, event in enumerate(history)}  # (time, id) is unique per customer
        at = sorted(positions[event[:2]] for event, _ in new)
        aggregates = as_of(history, at, max_age_days)
        for event, row in new:
            outputs[row] = ",".join("" if v is None else repr(v) for v in aggregates[positions[event[:2]]])
        return kept(history)

    def update(key: tuple, frames: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        parts = list(frames)
        batch = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        reasons = [None if reason is None or reason != reason else reason for reason in batch["reason"].tolist()]
        outputs: list[str | None] = [None] * len(reasons)
        columns = {name: batch[name].tolist() for name in ("customer_id", "event_id", "event_us", "event_type", "value")}
        known = _customers(known_customers)
        by_customer: dict[str, list[int]] = {}
        for row, reason in enumerate(reasons):
            if reason is None:
                customer = columns["customer_id"][row]
                if known is not None and customer not in known:
                    reasons[row] = UNKNOWN_CUSTOMER  # before the state: it never holds an unscorable customer
                else:
                    by_customer.setdefault(customer, []).append(row)
        now_ms = state.getCurrentProcessingTimeMs()  # the micro-batch's: the same when it is replayed
        stored = load(state)
        customers = {c: h for c, h in stored.items() if c in by_customer or not expired(h, now_ms)}
        for customer, rows in by_customer.items():
            customers[customer] = customer_batch(customers.get(customer, []), rows, columns, now_ms, reasons, outputs)
        if by_customer or len(customers) < len(stored):
            save(state, customers)
        size = [None] * len(reasons)
        if size:
            size[0] = f"{key[0]},{len(customers)},{sum(map(len, customers.values()))}"
        yield pd.DataFrame({"payload": batch["payload"].tolist(), "reason": reasons, "aggregates": outputs,
                            "state_size": size})

    return update


def state_sizes(output) -> dict[int, tuple[int, int]]:
    """The state sizes reported in an output's ``state_size`` column: bucket -> (customers, events)."""
    sizes = {}
    for text in output["state_size"].dropna().tolist():
        bucket, customers, events = (int(part) for part in text.split(","))
        sizes[bucket] = (customers, events)
    return sizes
