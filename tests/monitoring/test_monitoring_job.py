"""The monitoring job on generated data with a behaviour change, day by day as the DAG runs it.

One lake, built once: the generator's sample with a drift from DRIFT_FROM (the generator draws no
random numbers for the knob, so every day before it is the stationary sample of the same seed:
tests/unit/test_datagen.py proves it), the features job over it, a model trained on the early
snapshots with its baseline (churn_baseline, as the training job writes it), and that model's
predictions for every day from PREDICTED_FROM, written like churn_batch_scoring's. Then
``churn_monitoring.run`` for each monitored day in order, and ``decay.decide`` with the DAG's
default params after each, as the DAG's ``decide`` task does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

import churn_baseline
from churn import datagen, features
from churn_ml import decay, monitoring_report
from jobs import churn_features, churn_monitoring

pytestmark = pytest.mark.e2e  # the features job and 34 monitoring runs: not for make test-fast

START = dt.date(2026, 1, 1)
DAYS = 131
DRIFT_FROM = START + dt.timedelta(days=127)  # 2026-05-08: snapshot 05-09 is the first to see it
LAST = START + dt.timedelta(days=DAYS - 1)  # 2026-05-11
TRAIN = [START + dt.timedelta(days=d) for d in range(30, 61, 3)]
HOLDOUT = [START + dt.timedelta(days=d) for d in range(61, 65)]
PREDICTED_FROM = START + dt.timedelta(days=65)
MONITORED = [START + dt.timedelta(days=d) for d in range(97, DAYS)]  # 31 days before the drift is visible
MODEL_VERSION = "1"
ALL_SOURCES = MONITORED[5]  # a day the endpoint and the stream also scored (a sample of the customers)


def _day(d: dt.date) -> str:
    return d.isoformat()


def _frame(lake: Path, table: str, days: list[dt.date]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(lake / table / f"dt={_day(d)}") for d in days], ignore_index=True)


def _publish_predictions(lake: Path, day: dt.date, customers: pd.Series, scores: np.ndarray) -> None:
    partition = lake / "predictions" / f"dt={_day(day)}"
    partition.mkdir(parents=True, exist_ok=True)
    rows = [f"{c},{s:.7g}" for c, s in zip(customers, scores)]
    (partition / "part-00000.csv.out").write_text("\n".join(rows) + "\n")
    (partition / "_SUCCESS").write_text(json.dumps({"rows": len(rows), "model_package_version": MODEL_VERSION}))


def _capture(lake: Path, day: dt.date, rows: pd.DataFrame, scores: np.ndarray, per_request: int = 10) -> None:
    """SageMaker data capture files of requests of ``per_request`` CSV lines each, as an endpoint writes them."""
    folder = lake / "monitoring/capture/churn-xgboost/AllTraffic" / day.strftime("%Y/%m/%d") / "12"
    folder.mkdir(parents=True)
    records = []
    for start in range(0, len(rows), per_request):
        body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows.iloc[start:start + per_request].to_numpy())
        answer = "\n".join(repr(float(s)) for s in scores[start:start + per_request])
        records.append(json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body, "encoding": "CSV"},
                "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT", "data": answer,
                                   "encoding": "CSV"},
            },
            "eventMetadata": {"eventId": f"e-{start}", "inferenceTime": f"{day}T12:00:{start % 60:02d}Z"},
            "eventVersion": "0",
        }))
    (folder / "00-00-000-test.jsonl").write_text("\n".join(records) + "\n")


@pytest.fixture(scope="module")
def monitored(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    lake = root / "lake"
    datagen.generate(datagen.GeneratorConfig(out=lake / "raw", customers=500, start=START, days=DAYS, seed=11,
                                             drift_from=DRIFT_FROM, drift_strength=1.0))
    churn_features.run(spark, churn_features.parse_args(
        ["--ds", _day(LAST), "--lake", f"file://{lake}", "--history-days", str((LAST - TRAIN[0]).days)]))

    train = _frame(lake, "features", TRAIN).merge(_frame(lake, "labels", TRAIN), on=["customer_id", "snapshot_date"])
    names = list(features.FEATURE_COLUMNS)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 2, "seed": 0},
                        xgb.DMatrix(train[names], label=train[features.LABEL_COLUMN]), num_boost_round=60)
    holdout = _frame(lake, "features", HOLDOUT)
    baseline = churn_baseline.build(train[names], booster.predict(xgb.DMatrix(holdout[names])), "test-model")
    baseline_uri = f"file://{root}/registry/v0001/baseline.json"
    (root / "registry/v0001").mkdir(parents=True)
    (root / "registry/v0001/baseline.json").write_text(json.dumps(baseline))

    day = PREDICTED_FROM
    while day <= LAST:
        scoring = pd.read_parquet(lake / "features" / f"dt={_day(day)}")
        _publish_predictions(lake, day, scoring["customer_id"], booster.predict(xgb.DMatrix(scoring[names])))
        day += dt.timedelta(days=1)

    sample = pd.read_parquet(lake / "features" / f"dt={_day(ALL_SOURCES)}").iloc[::3]
    sample_scores = booster.predict(xgb.DMatrix(sample[names]))
    _capture(lake, ALL_SOURCES, sample[names], sample_scores)
    stream = lake / "stream_predictions" / f"dt={_day(ALL_SOURCES)}" / "hour=10" / "batch_id=0"
    stream.mkdir(parents=True)
    sample[names].assign(score=sample_scores).to_parquet(stream / "part-00000.parquet")

    # The days' jobs are independent (a backfill's runs): four at a time on the one session, like
    # parallel runs. The decisions then go in date order, as the DAG's decide tasks do.
    def monitor(day: dt.date) -> dict:
        return churn_monitoring.run(spark, churn_monitoring.parse_args(
            ["--ds", _day(day), "--lake", f"file://{lake}", "--baseline", baseline_uri, "--model-version", MODEL_VERSION]))

    with ThreadPoolExecutor(4) as pool:
        summaries = dict(zip(map(_day, MONITORED), pool.map(monitor, MONITORED)))
    decisions: dict[str, dict] = {}
    thresholds = decay.Thresholds()  # the DAG's default params
    for day in MONITORED:
        decisions[_day(day)] = decay.decide(_day(day), summaries, decisions, thresholds)
    return {"lake": lake, "baseline_uri": baseline_uri, "summaries": summaries, "decisions": decisions,
            "thresholds": thresholds}


def test_stationary_days_never_trigger_retraining(monitored):
    stationary = [d for d in monitored["decisions"] if d <= _day(DRIFT_FROM)]
    assert len(stationary) >= 30
    assert not [d for d in stationary if monitored["decisions"][d]["retrain"]], {
        d: monitored["decisions"][d]["reason"] for d in stationary if monitored["decisions"][d]["retrain"]}
    decayed = [d for d in stationary if decay.day_findings(monitored["summaries"][d], monitored["thresholds"])]
    print(f"false alarms: {len(decayed)} decayed days of {len(stationary)} stationary ones: {decayed}")


def test_injected_drift_is_detected_and_triggers_retraining_within_three_daily_runs(monitored):
    after = [d for d in monitored["decisions"] if d > _day(DRIFT_FROM)][:3]
    triggered = [d for d in after if monitored["decisions"][d]["retrain"]]
    assert triggered, {d: monitored["decisions"][d]["reason"] for d in after}
    first = triggered[0]
    print(f"drift from {DRIFT_FROM}: retraining triggered by the run of {first} "
          f"(run {after.index(first) + 1} after the change); {monitored['decisions'][first]['reason']}")
    # Once: the runs after the trigger do not trigger again.
    assert [d for d in monitored["decisions"] if monitored["decisions"][d]["retrain"]] == [first]
    # The report of that day shows it: the decision, the reason, and the drift plot.
    page = monitoring_report.render(first, monitored["summaries"], monitored["decisions"][first],
                                    monitored["thresholds"])
    assert "Decision: RETRAINING TRIGGERED" in page and monitored["decisions"][first]["reason"][:40] in page
    assert page.count("data:image/png;base64,") == 3  # drift per feature, score drift, realized AUC
    before = monitoring_report.render(_day(DRIFT_FROM), monitored["summaries"],
                                      monitored["decisions"][_day(DRIFT_FROM)], monitored["thresholds"])
    assert "Decision: no retraining" in before


def test_realized_auc_equals_a_direct_computation_on_the_joined_predictions_and_labels(monitored):
    lake = monitored["lake"]
    for ds in (_day(MONITORED[0]), _day(MONITORED[-1])):
        quality = monitored["summaries"][ds]["quality"]
        predicted = quality["prediction_date"]
        assert quality["status"] == "closed" and quality["model_version"] == MODEL_VERSION
        predictions = pd.read_csv(lake / "predictions" / f"dt={predicted}" / "part-00000.csv.out",
                                  names=["customer_id", "score"])
        labels = pd.read_parquet(lake / "labels" / f"dt={predicted}")
        joined = predictions.merge(labels, on="customer_id")
        assert quality["rows"] == len(joined) == len(predictions) and quality["unlabelled"] == 0
        assert quality["auc"] == pytest.approx(roc_auc_score(joined[features.LABEL_COLUMN], joined["score"]), abs=1e-12)


def test_the_batch_source_is_every_prediction_with_its_features_and_the_empty_sources_say_so(monitored):
    summary = monitored["summaries"][_day(MONITORED[0])]
    scored = pd.read_parquet(monitored["lake"] / "features" / f"dt={_day(MONITORED[0])}")
    assert summary["sources"]["batch"]["rows"] == len(scored) and summary["rejected"]["batch_without_features"] == 0
    assert summary["sources"]["capture"] == {"rows": 0} and summary["sources"]["stream"] == {"rows": 0}
    assert set(summary["sources"]["batch"]["features"]) == set(features.FEATURE_COLUMNS)


def test_endpoint_capture_and_stream_predictions_are_monitored_like_the_batch(monitored):
    summary = monitored["summaries"][_day(ALL_SOURCES)]
    batch, captured, stream = (summary["sources"][s] for s in ("batch", "capture", "stream"))
    assert captured["rows"] == stream["rows"] == -(-batch["rows"] // 3) and summary["rejected"]["capture"] == 0
    # A third of the same customers, scored by the same model: no drift against the batch's figures.
    assert captured["score"]["mean"] == pytest.approx(stream["score"]["mean"])
    assert captured["score"]["psi"] == pytest.approx(stream["score"]["psi"]) and captured["score"]["psi"] < 0.1


def test_rerunning_a_date_replaces_its_summary(monitored, spark):
    lake, ds = monitored["lake"], _day(MONITORED[-1])
    out = lake / "monitoring" / "daily" / f"dt={ds}"
    partition = lake / "predictions" / f"dt={ds}" / "part-00000.csv.out"
    lines = partition.read_text().splitlines()
    partition.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    args = argparse.Namespace(**vars(churn_monitoring.parse_args(
        ["--ds", ds, "--lake", f"file://{lake}", "--baseline", monitored["baseline_uri"], "--model-version", "1"])))
    churn_monitoring.run(spark, args)
    again = json.loads((out / "summary.json").read_text())
    assert again["sources"]["batch"]["rows"] == len(lines) // 2 != monitored["summaries"][ds]["sources"]["batch"]["rows"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["summary.json"]


def test_a_model_without_a_baseline_fails_with_what_to_do(monitored, spark, tmp_path):
    args = churn_monitoring.parse_args(["--ds", _day(LAST), "--lake", f"file://{monitored['lake']}",
                                        "--baseline", f"file://{tmp_path}/none.json", "--model-version", "1"])
    with pytest.raises(FileNotFoundError, match=r"registered without one .* Retrain \(trigger churn_training\)"):
        churn_monitoring.run(spark, args)


def _hive_type(text: str) -> tuple:
    """A Hive type string (``struct<a:bigint,b:array<double>>``) as a tree: (kind, ...)."""
    text = text.strip()
    for kind in ("struct", "array", "map"):
        if text.startswith(f"{kind}<") and text.endswith(">"):
            parts, depth, start, inner = [], 0, 0, text[len(kind) + 1:-1]
            for i, char in enumerate(inner):
                depth += char == "<"
                depth -= char == ">"
                if char == "," and depth == 0:
                    parts.append(inner[start:i])
                    start = i + 1
            parts.append(inner[start:])
            if kind == "struct":
                return ("struct", {p.split(":", 1)[0]: _hive_type(p.split(":", 1)[1]) for p in parts})
            return (kind, *[_hive_type(p) for p in parts])
    return (text,)


def _conforms(value, hive: tuple, where: str) -> None:
    """``value`` (parsed JSON) is readable as ``hive`` by Athena's JSON SerDe: every key a field, every value its type."""
    if value is None:
        return
    kind = hive[0]
    if kind == "struct":
        assert isinstance(value, dict), where
        assert set(value) <= set(hive[1]), f"{where}: {sorted(set(value) - set(hive[1]))} not in the table's columns"
        for key, item in value.items():
            _conforms(item, hive[1][key], f"{where}.{key}")
    elif kind == "map":
        assert isinstance(value, dict), where
        for key, item in value.items():
            _conforms(item, hive[2], f"{where}[{key}]")
    elif kind == "array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _conforms(item, hive[1], f"{where}[{i}]")
    elif kind in ("bigint", "int"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    elif kind == "double":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    elif kind == "string":
        assert isinstance(value, (str, int)), f"{where}: {value!r} is not a string"
    else:
        raise AssertionError(f"{where}: say in this test how the JSON SerDe reads {kind}")


def test_each_summary_is_one_json_line_of_the_catalogs_monitoring_daily_table(monitored):
    """Athena reads monitoring/daily/dt=<ds>/summary.json as the monitoring_daily table (one object per line)."""
    from local_aws.template import load

    table = next(r["Properties"]["TableInput"] for r in load()["Resources"].values()
                 if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] == "monitoring_daily")
    row = ("struct", {c["Name"]: _hive_type(c["Type"]) for c in table["StorageDescriptor"]["Columns"]})
    for day in MONITORED:
        text = (monitored["lake"] / "monitoring/daily" / f"dt={_day(day)}" / "summary.json").read_text()
        assert text.count("\n") == 1 and text.endswith("\n"), f"{day}: not one JSON line"
        summary = json.loads(text)
        assert set(summary) == set(row[1]), day
        _conforms(summary, row, _day(day))
    closed = [monitored["summaries"][_day(d)] for d in MONITORED if monitored["summaries"][_day(d)]["quality"]["status"] == "closed"]
    assert closed and all(s["quality"]["calibration"] for s in closed)  # the nested arrays were checked, not absent
