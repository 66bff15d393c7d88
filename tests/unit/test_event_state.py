"""The streaming job's per-customer state (churn.event_state), driven the way Spark drives it: one
call per customer and micro-batch, with a GroupState that keeps what the last call stored.

The same function runs in Spark in tests/streaming (local Spark 4) and tests/runtime (Glue 5's
Spark 3.5); here every rule is checked on its own: de-duplication within and across micro-batches,
late events, the "since day d - k" aggregates in event-time order, expiry."""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
import pytest

from churn import event_state

K = 2
DAY_US = event_state.US_PER_DAY


class FakeState:
    """The part of pyspark's GroupState the function uses."""

    def __init__(self, now: dt.datetime = dt.datetime(2026, 11, 23)) -> None:
        self.value = None
        self.now_ms = int(now.replace(tzinfo=dt.UTC).timestamp() * 1000)

    @property
    def exists(self) -> bool:
        return self.value is not None

    @property
    def get(self):
        return self.value

    def update(self, value) -> None:
        self.value = value

    def remove(self) -> None:
        self.value = None

    def getCurrentProcessingTimeMs(self) -> int:
        return self.now_ms


def _events(*rows) -> pd.DataFrame:
    """Rows (event_id, 'YYYY-MM-DD HH:MM', type, value[, reason]) as the operator's input."""
    out = []
    for row in rows:
        event_id, when, event_type, value, *reason = row
        out.append({event_state.BUCKET: 0, "customer_id": "C1", "event_id": event_id,
                    "event_us": int(pd.Timestamp(when, tz="UTC").timestamp() * 1_000_000),
                    "event_type": event_type, "value": value, "reason": reason[0] if reason else None,
                    "payload": json.dumps({"event_id": event_id})})
    return pd.DataFrame(out, columns=list(event_state.INPUT_COLUMNS))


def _run(update, state: FakeState, frame: pd.DataFrame, key=(0,)) -> pd.DataFrame:
    """The operator's output, its aggregates spread into columns (``event_state.unpack``)."""
    out = pd.concat(list(update(key, iter([frame]), state)), ignore_index=True)
    assert list(out.columns) == ["payload", "reason", "aggregates", "state_size"]
    spread = pd.DataFrame(event_state.unpack(out["aggregates"].tolist(), K))
    spread.insert(0, "event_id", [json.loads(p)["event_id"] for p in out["payload"]])
    spread.insert(1, "reason", out["reason"])
    return spread


def _row(out: pd.DataFrame, event_id: str) -> dict:
    return out.set_index("event_id").loc[event_id].to_dict()


@pytest.fixture
def update():
    return event_state.state_function(K, lateness_ms=3_600_000, idle_timeout_ms=60_000)


def test_aggregates_since_each_day_in_event_time_order(update):
    state = FakeState()
    out = _run(update, state, _events(
        ("e3", "2026-06-10 08:00", "usage", 1.5),
        ("e1", "2026-06-08 09:00", "usage", 10.25),      # two days before e3
        ("e2", "2026-06-09 23:00", "support_ticket", 2.0),
        ("e4", "2026-06-10 09:00", "plan_change", -1.0),
        ("e0", "2026-06-07 12:00", "usage", 99.0),       # three days before e3: beyond K
    ))
    assert out["reason"].isna().all()
    e4 = _row(out, "e4")
    assert [e4[f"usage_minutes_since_{k}d"] for k in range(3)] == [1.5, 1.5, 10.25 + 1.5]
    assert [e4[f"active_days_since_{k}d"] for k in range(3)] == [1.0, 1.0, 2.0]
    assert [e4[f"tickets_since_{k}d"] for k in range(3)] == [0.0, 1.0, 1.0]
    assert [e4[f"downgrades_since_{k}d"] for k in range(3)] == [1.0, 1.0, 1.0]
    assert e4[event_state.LAST_USAGE] == 0.0
    e2 = _row(out, "e2")  # as of its own time: e3 and e4 come later and do not count
    assert [e2[f"usage_minutes_since_{k}d"] for k in range(3)] == [0.0, 10.25, 10.25 + 99.0]
    assert e2[event_state.LAST_USAGE] == 1.0 and e2["tickets_since_0d"] == 1.0
    e1 = _row(out, "e1")
    assert e1["usage_minutes_since_0d"] == 10.25 and e1["active_days_since_2d"] == 2.0


def test_minutes_are_summed_in_event_time_order_whatever_the_arrival_order(update):
    values = [0.1, 0.2, 0.3, 1e16, -1e16, 0.7]  # floating-point sums depend on the order
    rows = [(f"e{i}", f"2026-06-10 0{i}:00", "usage", v) for i, v in enumerate(values)]
    forward = _run(update, FakeState(), _events(*rows))
    backward = _run(event_state.state_function(K, 3_600_000, 60_000), FakeState(), _events(*reversed(rows)))
    expected = 0.0
    for v in values:
        expected += v
    assert _row(forward, "e5")["usage_minutes_since_0d"] == _row(backward, "e5")["usage_minutes_since_0d"] == expected


def test_an_event_resent_in_the_same_or_a_later_micro_batch_is_not_scored_again(update):
    state = FakeState()
    first = _run(update, state, _events(("e1", "2026-06-10 10:00", "usage", 5.0),
                                       ("e1", "2026-06-10 10:00", "usage", 5.0),
                                       ("e2", "2026-06-10 11:00", "usage", 1.0)))
    assert sorted(first["reason"].fillna("-")) == ["-", "-", event_state.DUPLICATE]
    later = _run(update, state, _events(("e2", "2026-06-10 11:00", "usage", 1.0),
                                       ("e3", "2026-06-10 12:00", "usage", 2.0)))
    assert _row(later, "e2")["reason"] == event_state.DUPLICATE
    assert math.isnan(_row(later, "e2")["usage_minutes_since_0d"])
    assert _row(later, "e3")["usage_minutes_since_0d"] == 8.0  # e1 once, e2 once, e3


def test_an_event_arriving_after_a_later_one_counts_from_then_on(update):
    state = FakeState()
    first = _run(update, state, _events(("late", "2026-06-10 12:00", "support_ticket", 1.0)))
    assert _row(first, "late")["tickets_since_0d"] == 1.0
    out = _run(update, state, _events(("early", "2026-06-10 11:30", "support_ticket", 1.0),
                                     ("next", "2026-06-10 13:00", "support_ticket", 1.0)))
    assert _row(out, "early")["tickets_since_0d"] == 1.0  # as of 11:30: the 12:00 ticket is later
    assert _row(out, "next")["tickets_since_0d"] == 3.0


def test_events_older_than_the_customers_watermark_are_set_aside_as_late(update):
    state = FakeState()
    _run(update, state, _events(("newest", "2026-06-10 13:00", "usage", 1.0)))
    out = _run(update, state, _events(("old", "2026-06-10 11:59", "usage", 1.0),
                                     ("ok", "2026-06-10 12:00", "usage", 2.0)))  # the lateness: one hour
    assert _row(out, "old")["reason"] == event_state.LATE
    assert pd.isna(_row(out, "ok")["reason"]) and _row(out, "ok")["usage_minutes_since_0d"] == 2.0
    assert state.get[1] == ["ok", "newest"]  # the late event is in nobody's history
    first = _run(event_state.state_function(K, 3_600_000, 60_000), FakeState(),
                 _events(("a", "2026-06-10 13:00", "usage", 1.0), ("b", "2026-06-10 01:00", "usage", 1.0)))
    assert first["reason"].isna().all(), "within one micro-batch nothing is late: it is all new to the state"


def test_invalid_rows_pass_through_and_keep_no_state(update):
    state = FakeState()
    frame = _events(("bad", "2026-06-10 10:00", "usage", 1.0, "negative_value"))
    frame["customer_id"] = None
    out = _run(update, state, frame)
    assert out["reason"].tolist() == ["negative_value"] and not state.exists
    frame["customer_id"] = "C1"
    out = _run(update, state, pd.concat([frame, _events(("e1", "2026-06-10 11:00", "usage", 1.0))]))
    assert _row(out, "bad")["reason"] == "negative_value" and math.isnan(_row(out, "bad")["active_days_since_0d"])
    assert state.get[1] == ["e1"]


def test_state_keeps_only_the_days_a_snapshot_in_use_can_need_and_expires(update):
    state = FakeState(now=dt.datetime(2026, 6, 6, 12, 0))
    _run(update, state, _events(("d1", "2026-06-01 10:00", "usage", 1.0), ("d3", "2026-06-03 10:00", "usage", 1.0),
                                ("d4", "2026-06-04 10:00", "usage", 1.0)))
    assert state.get[1] == ["d3", "d4"]  # the newest day minus K onwards
    _run(update, state, _events(("d6", "2026-06-06 10:00", "usage", 1.0)))
    assert state.get[1] == ["d4", "d6"]
    other = _events(("o1", "2026-06-06 11:00", "usage", 1.0))
    other["customer_id"] = "C2"
    state.now_ms += 120_000  # C1 idle for longer than the idle time, but an on-time event may still need it
    _run(update, state, other)
    assert sorted(zip(state.get[0], state.get[1])) == [("C1", "d4"), ("C1", "d6"), ("C2", "o1")]
    state.now_ms += (K + 2) * DAY_US // 1000  # past K + 1 days and the lateness after C1's newest event
    again = _events(("o2", "2026-06-06 11:30", "usage", 1.0))
    again["customer_id"] = "C2"
    _run(update, state, again)
    assert state.get[0] == ["C2", "C2"]  # C1 removed; C2 has just had events: kept, resends still found
    assert _row(_run(update, state, again), "o2")["reason"] == event_state.DUPLICATE


def test_a_replayed_customer_is_kept_while_its_events_keep_arriving(update):
    # Replaying old days: the wall clock is months past the events, so only the idle time decides.
    state = FakeState(now=dt.datetime(2026, 11, 23))
    _run(update, state, _events(("r1", "2026-06-01 10:00", "usage", 1.0)))
    state.now_ms += 30_000  # within the idle time
    other = _events(("o1", "2026-06-01 10:05", "usage", 1.0))
    other["customer_id"] = "C2"
    _run(update, state, other)
    assert sorted(state.get[1]) == ["o1", "r1"]
    state.now_ms += 60_001  # C1 idle for longer than the idle time: removed at the bucket's next events
    _run(update, state, _events(("o2", "2026-06-01 10:06", "usage", 1.0)).assign(customer_id="C2"))
    assert sorted(state.get[1]) == ["o1", "o2"]


def test_customers_in_one_bucket_keep_their_own_history_resends_and_lateness(update):
    state = FakeState()
    first = _events(("a1", "2026-06-10 13:00", "usage", 1.0))
    other = _events(("b1", "2026-06-10 08:00", "usage", 4.0))
    other["customer_id"] = "C2"
    _run(update, state, pd.concat([first, other], ignore_index=True))
    again = _events(("b2", "2026-06-10 09:00", "usage", 2.0), ("a1", "2026-06-10 13:00", "usage", 1.0))
    again.loc[0, "customer_id"] = "C2"
    out = _run(update, state, again)
    # 09:00 is hours before C1's newest event, not C2's: on time, and added to C2's history only.
    assert pd.isna(_row(out, "b2")["reason"]) and _row(out, "b2")["usage_minutes_since_0d"] == 6.0
    assert _row(out, "a1")["reason"] == event_state.DUPLICATE
    assert sorted(zip(state.get[0], state.get[1])) == [("C1", "a1"), ("C2", "b1"), ("C2", "b2")]


def test_aggregate_columns_name_every_window():
    assert event_state.aggregate_columns(1) == [
        "usage_minutes_since_0d", "active_days_since_0d", "tickets_since_0d", "payment_failures_since_0d",
        "downgrades_since_0d", "upgrades_since_0d", "usage_minutes_since_1d", "active_days_since_1d",
        "tickets_since_1d", "payment_failures_since_1d", "downgrades_since_1d", "upgrades_since_1d",
        "last_usage_days_ago"]


def _usage(customer: str, count: int, start: str = "2026-06-10 00:00", prefix: str = "u") -> pd.DataFrame:
    """``count`` usage events of ``customer``, a second apart."""
    first = pd.Timestamp(start, tz="UTC")
    rows = [(f"{prefix}{i:06d}", str(first + pd.Timedelta(seconds=i))[:19], "usage", 1.0) for i in range(count)]
    frame = _events(*[(i, w, t, v) for i, w, t, v in rows])
    frame["event_us"] = [int((first + pd.Timedelta(seconds=i)).timestamp() * 1_000_000) for i in range(count)]
    return frame.assign(customer_id=customer)


def test_as_of_one_pass_matches_the_definition_over_every_prefix():
    """The one-pass aggregates equal the definition (each event over every event at or before it,
    day by day), for events over more days than K, with gaps and several events a day."""
    import random

    rng = random.Random(7)
    kinds = ["usage", "usage", "support_ticket", "payment_failure", "plan_change"]
    history = sorted((int(day * DAY_US + rng.randrange(DAY_US)), f"e{n}", rng.choice(kinds), rng.choice([-1.0, 1.0, 0.3, 7.1]), 0)
                     for n, day in enumerate(rng.choice([0, 1, 1, 2, 4, 5, 5, 5, 9]) for _ in range(60)))

    def definition(position: int) -> list:
        day = history[position][0] // DAY_US
        out = []
        for k in range(K + 1):
            window = [e for e in history[: position + 1] if day - k <= e[0] // DAY_US]
            minutes = 0.0
            for e in window:
                minutes += e[3] if e[2] == "usage" else 0.0
            out += [minutes, float(len({e[0] // DAY_US for e in window if e[2] == "usage"})),
                    float(sum(e[2] == "support_ticket" for e in window)), float(sum(e[2] == "payment_failure" for e in window)),
                    float(sum(e[2] == "plan_change" and e[3] < 0 for e in window)),
                    float(sum(e[2] == "plan_change" and e[3] > 0 for e in window))]
        used = [e[0] // DAY_US for e in history[: position + 1] if e[2] == "usage" and day - e[0] // DAY_US <= K]
        return out + [float(day - max(used)) if used else None]

    positions = sorted(rng.sample(range(len(history)), 25))
    assert event_state.as_of(history, positions, K) == {p: definition(p) for p in positions}


def test_one_busy_customer_is_capped_and_its_aggregation_is_not_quadratic():
    import time

    update = event_state.state_function(K, 3_600_000, 60_000, max_events_per_customer=20_000)
    state = FakeState()
    started = time.perf_counter()
    out = _run(update, state, _usage("C1", 50_000))
    seconds = time.perf_counter() - started
    assert out["reason"].isna().sum() == 20_000
    assert (out["reason"] == event_state.EVENT_LIMIT).sum() == 30_000
    assert _row(out, "u019999")["usage_minutes_since_0d"] == 20_000.0  # the first 20,000 in event-time order
    assert len(state.get[1]) == 20_000
    # Quadratic (each event over its history) is 2e8 steps here: minutes. One pass is well under that.
    assert seconds < 30, f"50,000 events of one customer took {seconds:.1f}s"
    more = _run(update, state, _usage("C1", 1, start="2026-06-10 20:00", prefix="late"))
    assert more["reason"].tolist() == [event_state.EVENT_LIMIT], "the cap holds across micro-batches"


def test_the_cap_frees_up_as_old_days_leave_the_state():
    update = event_state.state_function(K, 3_600_000, 60_000, max_events_per_customer=3)
    state = FakeState()
    _run(update, state, _events(("a", "2026-06-01 10:00", "usage", 1.0), ("b", "2026-06-01 11:00", "usage", 1.0),
                                ("c", "2026-06-01 12:00", "usage", 1.0)))
    full = _run(update, state, _events(("d", "2026-06-01 13:00", "usage", 1.0)))
    assert full["reason"].tolist() == [event_state.EVENT_LIMIT]
    later = _run(update, state, _events(("e", "2026-06-05 10:00", "usage", 1.0), ("f", "2026-06-05 11:00", "usage", 1.0)))
    assert later["reason"].isna().all() and state.get[1] == ["e", "f"]  # day 1 is beyond K of day 5


def test_unknown_customers_are_quarantined_before_the_state():
    update = event_state.state_function(K, 3_600_000, 60_000, known_customers=frozenset({"C1"}))
    state = FakeState()
    strangers = pd.concat([_events((f"x{i}", "2026-06-10 10:00", "usage", 1.0)).assign(customer_id=f"S{i}")
                           for i in range(100)] + [_events(("k1", "2026-06-10 10:00", "usage", 1.0))], ignore_index=True)
    out = _run(update, state, strangers)
    assert (out["reason"] == event_state.UNKNOWN_CUSTOMER).sum() == 100 and pd.isna(_row(out, "k1")["reason"])
    assert state.get[0] == ["C1"], "an unknown customer entered the state"


def test_each_call_reports_its_buckets_state_size(update):
    state = FakeState()
    frame = pd.concat([_events(("a", "2026-06-10 10:00", "usage", 1.0), ("b", "2026-06-10 11:00", "usage", 1.0)),
                       _events(("c", "2026-06-10 10:00", "usage", 1.0)).assign(customer_id="C2")], ignore_index=True)
    out = pd.concat(list(update((5,), iter([frame]), state)), ignore_index=True)
    assert out["state_size"].notna().sum() == 1
    assert event_state.state_sizes(out) == {5: (2, 3)}
