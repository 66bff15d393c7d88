"""The data capture reader (include/churn/capture.py) on hand-written files in SageMaker's format.

The records are written as AWS documents them (Model Monitor, "View captured data"): CSV bodies as
text, other types as BASE64; a request of several lines answered with one score per line. The
local endpoint's own files are read back in tests/unit/test_endpoint_capture.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from urllib.parse import urlparse

from churn import capture
from churn.features import FEATURE_COLUMNS

DAY = dt.date(2026, 6, 1)
ROWS = [[float(i + k) for i in range(len(FEATURE_COLUMNS))] for k in range(3)]  # three requests' features


def csv_line(values, record_id: str | None = None) -> str:
    return ",".join(([record_id] if record_id else []) + ["" if v is None else repr(v) for v in values])


def record(request: str, response: str, event: str, time: str = "2026-06-01T12:00:00Z", *,
           request_type: str = "text/csv", encoding: str = "CSV", response_encoding: str = "CSV") -> str:
    def side(body: str, content_type: str, mode: str, how: str) -> dict:
        data = base64.b64encode(body.encode()).decode() if how == "BASE64" else body
        return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": how}

    return json.dumps({
        "captureData": {"endpointInput": side(request, request_type, "INPUT", encoding),
                        "endpointOutput": side(response, "text/csv; charset=utf-8", "OUTPUT", response_encoding)},
        "eventMetadata": {"eventId": event, "inferenceTime": time},
        "eventVersion": "0",
    })


def write(root, endpoint: str, variant: str, hour: str, lines: list[str], day: dt.date = DAY, name: str = "00-00-000-a"):
    folder = root / endpoint / variant / f"{day:%Y/%m/%d}" / hour
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def columns(schema) -> list[tuple]:
    return [(f.name, f.dataType) for f in schema.fields]


def assert_rows(frame, expected: list[tuple]) -> None:
    """The frame has the reader's schema and exactly these rows, in any order. (Not pyspark.testing's
    assertDataFrameEqual: it imports pyspark.pandas, which this environment's pandas breaks.)"""
    assert columns(frame.schema) == columns(capture.ROWS_SCHEMA)
    key = lambda row: tuple((v is None, v) for v in row)  # noqa: E731
    assert sorted(map(tuple, frame.collect()), key=key) == sorted(expected, key=key)


def test_csv_and_base64_records_give_one_row_per_line_paired_with_its_score(spark, tmp_path):
    one_line = record(csv_line(ROWS[0]) + "\n", "0.125000\n", "e-1")
    # Two lines with ids, as the streaming job sends them; the answer echoes the ids. A missing value too.
    with_ids = record(csv_line(ROWS[1], "c1") + "\n" + csv_line([None, *ROWS[2][1:]], "c2") + "\n",
                      "c1,0.250000\nc2,0.500000\n", "e-2", "2026-06-01T13:05:09Z")
    # A type the config did not list as CSV is captured as BASE64 (the body is CSV all the same).
    as_base64 = record(csv_line(ROWS[0]) + "\n", "0.750000\n", "e-3", request_type="text/plain", encoding="BASE64",
                       response_encoding="BASE64")
    write(tmp_path, "churn-xgboost", "primary", "12", [one_line, as_base64])
    write(tmp_path, "churn-xgboost", "primary", "13", [with_ids])
    write(tmp_path, "churn-xgboost", "primary", "12", [one_line], day=DAY + dt.timedelta(days=1))  # another day

    rows, rejected = capture.read_capture(spark, f"file://{tmp_path}", DAY)

    noon, later = dt.datetime(2026, 6, 1, 12), dt.datetime(2026, 6, 1, 13, 5, 9)
    base = ("churn-xgboost", "primary")
    assert_rows(rows, [
        (*base, "e-1", noon, *ROWS[0], 0.125),
        (*base, "e-3", noon, *ROWS[0], 0.75),
        (*base, "e-2", later, *ROWS[1], 0.25),
        (*base, "e-2", later, None, *ROWS[2][1:], 0.5),
    ])
    assert rejected.count() == 0


def test_what_cannot_be_used_is_rejected_with_its_reason_and_nothing_is_dropped(spark, tmp_path):
    good = csv_line(ROWS[0]) + "\n"
    bad = {
        "unparseable_json": '{"captureData": {"endpointInput": ',
        "missing_capture_data": json.dumps({"captureData": {"endpointInput": json.loads(record(good, "0.1", "x"))[
            "captureData"]["endpointInput"]}, "eventMetadata": {"eventId": "x", "inferenceTime": "2026-06-01T12:00:00Z"}}),
        "missing_event_metadata": record(good, "0.1\n", "e", time="yesterday"),
        "unsupported_content_type": record(json.dumps({"instances": [ROWS[0]]}), "0.1\n", "e", request_type="application/json",
                                           encoding="JSON"),
        "undecodable_data": record(good, "0.1\n", "e").replace('"encoding": "CSV"}, "endpointOutput"',
                                                               '"encoding": "GZIP"}, "endpointOutput"'),
        "line_count_mismatch": record(good + good, "0.1\n", "e"),
        "wrong_field_count": record(csv_line(ROWS[0][:-1]) + "\n", "0.1\n", "e"),
        "non_numeric_value": record(csv_line(ROWS[0]).replace("3.0", "three") + "\n", "0.1\n", "e"),
    }
    also_bad = [("non_numeric_value", record(good, "n/a\n", "e")),  # the score
                ("non_numeric_value", record(csv_line(ROWS[0]).replace("3.0", "1e400") + "\n", "0.1\n", "e")),
                ("wrong_field_count", record(csv_line(ROWS[0], "c1") + "\n", "0.1\n", "e")),  # an id, but no id answered
                ("undecodable_data", record(good, "0.1\n", "e", encoding="BASE64").replace('"data": "', '"data": "!'))]
    path = write(tmp_path, "churn-xgboost", "primary", "12",
                 [*bad.values(), *(line for _, line in also_bad), record(good, "0.9\n", "kept"), ""])

    rows, rejected = capture.read_capture(spark, str(tmp_path), DAY)

    assert [r.event_id for r in rows.collect()] == ["kept"]
    found = rejected.collect()
    assert Counter((r.reason, r.raw_record) for r in found) == Counter([*bad.items(), *also_bad])
    assert set(capture.REASONS) == set(bad)  # every reason the reader gives is exercised here
    assert {urlparse(r.source_file).path for r in found} == {str(path)}


def test_no_capture_for_the_day_is_an_empty_result(spark, tmp_path):
    write(tmp_path, "churn-xgboost", "primary", "12", [record(csv_line(ROWS[0]), "0.1", "e")], day=DAY - dt.timedelta(days=1))
    for root in (tmp_path, tmp_path / "nothing-here"):
        rows, rejected = capture.read_capture(spark, str(root), DAY)
        assert columns(rows.schema) == columns(capture.ROWS_SCHEMA)
        assert columns(rejected.schema) == columns(capture.REJECTED_SCHEMA)
        assert rows.count() == 0 and rejected.count() == 0
