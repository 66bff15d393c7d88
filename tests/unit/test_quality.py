"""Quality rules: every bad-record kind gets its reason, every good record passes."""

from __future__ import annotations

import json

import pytest

from churn import quality


def _write(tmp_path, entity, day, lines):
    part = tmp_path / entity / f"dt={day}"
    part.mkdir(parents=True)
    (part / "part-00000.jsonl").write_text("\n".join(lines) + "\n")
    return f"file://{part}/"


GOOD_EVENT = {"event_id": "E1", "customer_id": "C1", "event_ts": "2026-03-01T10:00:00Z", "event_type": "usage", "value": 12.5}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"event_type": "plan_change", "value": -1.0}, None),  # a downgrade is not a negative value
        ({"event_id": None}, "missing_event_id"),
        ({"customer_id": ""}, "missing_customer_id"),
        ({"event_ts": "yesterday"}, "invalid_event_ts"),
        ({"event_ts": "2026-03-02T00:00:01Z"}, "event_ts_outside_partition"),
        ({"event_type": "refund"}, "unknown_event_type"),
        ({"value": "lots"}, "value_not_a_number"),
        ({"value": -3.0}, "negative_value"),
        ({"event_type": "support_ticket", "value": 7}, "invalid_ticket_severity"),
        ({"event_type": "plan_change", "value": 2}, "invalid_plan_change"),
    ],
)
def test_event_rules(spark, tmp_path, change, reason):
    uri = _write(tmp_path, "events", "2026-03-01", [json.dumps({**GOOD_EVENT, **change})])
    row = quality.validate(quality.read_raw(spark, "events", [uri]), "events").first()
    assert row["reason"] == reason
    assert row["dt"] == "2026-03-01"


def test_malformed_line_is_quarantined_with_the_raw_text(spark, tmp_path):
    broken = '{"event_id": "E9", "customer_id": "C'
    uri = _write(tmp_path, "events", "2026-03-01", [json.dumps(GOOD_EVENT), broken])
    validated = quality.validate(quality.read_raw(spark, "events", [uri]), "events").cache()
    bad = quality.quarantined(validated, "events").collect()
    assert [(r["reason"], r["raw_record"]) for r in bad] == [("malformed_line", broken)]
    assert bad[0]["source_file"].endswith("part-00000.jsonl")
    clean = quality.clean_events(validated).collect()
    assert len(clean) == 1 and clean[0]["value"] == 12.5
    assert quality.summarize(validated) == {"2026-03-01": {"records": 2, "bad": 1}}


GOOD_CUSTOMER = {
    "customer_id": "C1", "signup_date": "2026-02-01", "plan": "basic", "monthly_charge": 19.5,
    "contract": "monthly", "region": "north", "payment_method": "card",
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"customer_id": None}, "missing_customer_id"),
        ({"signup_date": "2026-13-40"}, "invalid_signup_date"),
        ({"signup_date": "2027-01-01"}, "signup_date_after_partition"),
        ({"plan": "gold"}, "unknown_plan"),
        ({"monthly_charge": "n/a"}, "monthly_charge_not_a_number"),
        ({"monthly_charge": -19.5}, "monthly_charge_out_of_range"),
        ({"contract": "weekly"}, "unknown_contract"),
        ({"region": "mars"}, "unknown_region"),
        ({"payment_method": "cash"}, "unknown_payment_method"),
    ],
)
def test_customer_rules(spark, tmp_path, change, reason):
    uri = _write(tmp_path, "customers", "2026-03-01", [json.dumps({**GOOD_CUSTOMER, **change})])
    row = quality.validate(quality.read_raw(spark, "customers", [uri]), "customers").first()
    assert row["reason"] == reason


def test_bad_fraction_limit_fails_with_a_clear_message():
    counts = {"2026-03-01": {"records": 100, "bad": 10}, "2026-03-02": {"records": 10, "bad": 1}}
    with pytest.raises(ValueError, match=r"dt=2026-03-01: 10 of 100 \(10.0%\).*s3://lake/errors/events"):
        quality.check_bad_fraction("events", counts, 0.05, 5, "s3://lake/errors/events")
    # One bad record in a ten-record partition stays under the min_bad floor.
    quality.check_bad_fraction("events", {"2026-03-02": {"records": 10, "bad": 1}}, 0.05, 5, "s3://x")
