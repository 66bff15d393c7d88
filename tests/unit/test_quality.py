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
        ({"event_id": "E1,2"}, "invalid_event_id"),
        ({"event_id": 'E"1'}, "invalid_event_id"),
        ({"event_id": "E1\n"}, "invalid_event_id"),  # Java's $ would accept it
        ({"event_id": "abc "}, "invalid_event_id"),
        ({"event_id": "E" * 65}, "invalid_event_id"),
        ({"event_id": "nan"}, None),  # an odd id, but safe anywhere: scores are matched by position
        ({"customer_id": "C 1"}, "invalid_customer_id"),
        ({"value": "nan"}, "value_not_finite"),
        ({"value": "inf"}, "value_not_finite"),
        ({"value": "-Infinity"}, "value_not_finite"),
        ({"value": 1e308 * 10}, "value_not_finite"),  # json.dumps writes Infinity
        ({"value": "1e400"}, "value_not_finite"),
        ({"value": 1441.0}, "value_out_of_range"),
        ({"event_type": "payment_failure", "value": 5000.0}, "value_out_of_range"),
    ],
)
def test_event_rules(spark, tmp_path, change, reason):
    uri = _write(tmp_path, "events", "2026-03-01", [json.dumps({**GOOD_EVENT, **change})])
    row = quality.validate(quality.read_raw(spark, "events", [uri]), "events").first()
    assert row["reason"] == reason
    assert row["dt"] == "2026-03-01"


@pytest.mark.parametrize(("value", "reason"), [("1e400", "value_not_finite"), ("-1e400", "value_not_finite"),
                                               ("NaN", "value_not_finite"), ("1e300", "value_out_of_range")])
def test_json_numbers_beyond_a_double(spark, tmp_path, value, reason):
    line = json.dumps(GOOD_EVENT).replace('"value": 12.5', f'"value": {value}')
    uri = _write(tmp_path, "events", "2026-03-01", [line])
    assert quality.validate(quality.read_raw(spark, "events", [uri]), "events").first()["reason"] == reason


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


def test_a_record_over_the_size_cap_is_quarantined_unparsed_with_its_start(spark, tmp_path):
    huge = json.dumps({**GOOD_EVENT, "event_id": "E2", "padding": "x" * 5000})
    uri = _write(tmp_path, "events", "2026-03-01", [json.dumps(GOOD_EVENT), huge, "", "  "])
    validated = quality.validate(quality.read_raw(spark, "events", [uri], max_record_bytes=4096), "events").cache()
    bad = quality.quarantined(validated, "events").collect()
    assert [r["reason"] for r in bad] == ["record_too_large"]
    assert bad[0]["raw_record"].startswith(huge[:1000]) and f"[{len(huge)} bytes, over the limit of 4096]" in bad[0]["raw_record"]
    assert validated.count() == 2, "blank lines are not records"


def test_two_customers_events_with_one_id_are_two_events_and_a_repeat_is_one(spark, tmp_path):
    other = {**GOOD_EVENT, "customer_id": "C2"}
    uri = _write(tmp_path, "events", "2026-03-01", [json.dumps(GOOD_EVENT), json.dumps(other), json.dumps(other)])
    clean = quality.clean_events(quality.validate(quality.read_raw(spark, "events", [uri]), "events")).collect()
    assert sorted((r["customer_id"], r["event_id"]) for r in clean) == [("C1", "E1"), ("C2", "E1")]


@pytest.mark.parametrize(("value", "valid"), [
    ("C0000042", True), ("E0099-0000123", True), ("a.b_c-d", True), ("x" * 64, True), ("x" * 65, False),
    ("", False), ("abc ", False), (" abc", False), ("a,b", False), ('a"b', False), ("a\nb", False), ("a\n", False),
    ("é", False), (None, False), (42, False),
])
def test_valid_id_is_the_spark_rule(spark, value, valid):
    from churn import schema

    assert schema.valid_id(value) is valid
    if isinstance(value, str) and value:
        frame = spark.createDataFrame([(value,)], "customer_id string")
        assert frame.select(quality._invalid_id("customer_id").alias("bad")).first()["bad"] is (not valid)


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
        ({"monthly_charge": "NaN"}, "monthly_charge_not_finite"),
        ({"customer_id": "C1;drop"}, "invalid_customer_id"),
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
