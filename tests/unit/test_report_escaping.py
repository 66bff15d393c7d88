"""What the monitoring report (HTML) and the model card (Markdown) insert stays text (issue 23).

Feature names, sources, dates, the gate's or a person's reason and URIs come from data: a ``<script>``,
a ``|``, a ``*`` or a line break in them must not become markup, run in the browser that opens the
page, or break a table. The report is uploaded as ``text/html; charset=utf-8``.
"""

from __future__ import annotations

import importlib.util
import json
from html.parser import HTMLParser
from pathlib import Path

import boto3
import pytest
from markdown_it import MarkdownIt
from moto import mock_aws

from churn_ml import decay, model_card, monitoring_report

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script> | *bold* _x_ [a](javascript:alert(1)) `tick`\nsecond line"
DS = "2026-05-10"
T = decay.Thresholds()


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def _summary(feature: str = "tenure_days", source: str = "batch") -> dict:
    return {
        "model_version": "3", "baseline_uri": f"s3://churn-lake/registry/{HOSTILE}/baseline.json",
        "sources": {source: {"rows": 1000, "score": {"psi": 0.01, "js": 0.01, "mean": 0.2, "baseline_mean": 0.2},
                             "features": {feature: {"psi": 0.3, "js": 0.1}, "plan": {"psi": 0.01, "js": 0.01}}}},
        "quality": {"status": "closed", "prediction_date": "2026-04-10", "model_version": "3", "rows": "<b>900</b>",
                    "positives": "<i>90</i>", "auc": 0.8, "pr_auc": 0.5, "brier": 0.1, "ece": 0.02, "lift_at_10": 2.0},
        "rejected": {"capture": HOSTILE},
    }


def _decision() -> dict:
    return {"ds": DS, "retrain": True, "reason": HOSTILE,
            "days": [{"ds": f"<u>{DS}</u>", "decayed": True, "reasons": [HOSTILE]}]}


def test_the_report_escapes_every_value_it_inserts():
    page = monitoring_report.render(DS, {DS: _summary(feature=HOSTILE, source=f"<em>{HOSTILE}</em>")}, _decision(), T)
    parsed = _parse(page)
    # The page's own elements only: none of the inserted values became one.
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li",
                                "table", "tr", "th", "td", "img", "code"}, set(parsed.tags)
    assert "script" not in parsed.tags and "<script>" not in page and "&lt;script&gt;" in page
    text = "".join(parsed.text)
    assert "<b>900</b> customers, <i>90</i> churned" in text  # rows and positives, shown as written
    assert f"<u>{DS}</u>: decayed" in text and "<em><script>" in text


def test_the_report_escapes_the_prediction_date_of_a_window_not_closed_yet():
    summary = {**_summary(), "quality": {"status": "no_<predictions>", "prediction_date": "<img src=x onerror=1>"}}
    page = monitoring_report.render(DS, {DS: summary}, _decision(), T)
    assert "<img src=x" not in page
    assert "predictions of <img src=x onerror=1>: no <predictions>" in "".join(_parse(page).text)


def _card() -> dict:
    return {
        "version": 7, "status": "Approved", "reason": HOSTILE, "publication": "published | *now*",
        "training_job_name": "churn-xgb-`1`", "model_data_url": f"s3://churn-lake/models/churn/{HOSTILE}/model.tar.gz",
        "training_set": "s3://churn-lake/training_sets/ds=2026-05-10", "ds": "2026-05-10",
        "splits": {"train|x": {"rows": 10, "positive_rate": 0.1, "snapshots": ["<b>a</b>", "b"]}},
        "hyperparameters": {"eta": "```\n<script>x</script>"},
        "features": [HOSTILE, "plan"], "metrics": {"holdout:auc": 0.8}, "champion_metrics": {},
        "baseline": {"rows": {"train": 10, "holdout": 5},
                     "features": [{"feature": HOSTILE, "bins": 3, "edge_range": [0.0, 1.0], "missing_rate": 0.0},
                                  {"feature": "plan", "bins": 2, "edge_range": [0.0, 1.0], "missing_rate": 0.0}],
                     "score": {"deciles": [0.1, 0.5], "mean": 0.3, "missing_rate": 0.0}},
        "baseline_uri": f"s3://churn-lake/registry/{HOSTILE}/baseline.json",
    }


def test_the_model_card_keeps_inserted_values_as_text_in_any_markdown_renderer():
    markdown = model_card.render(_card())
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)  # raw HTML allowed
    parsed = _parse(rendered)
    assert "script" not in parsed.tags and "a" not in parsed.tags and "em" not in parsed.tags, set(parsed.tags)
    text = "".join(parsed.text)
    assert "*bold* _x_" in text and "<script>alert(1)</script> | " in text  # shown as written, on one line
    # The tables keep their shape: the baseline's two features are two rows of four cells.
    baseline_table = rendered.split("<h2>Monitoring baseline</h2>", 1)[1]
    rows = baseline_table.split("<tbody>", 1)[1].split("</tbody>", 1)[0].count("<tr>")
    assert rows == 2 and baseline_table.split("</tbody>", 1)[0].count("<td>") == 8
    data_rows = rendered.split("<h2>Data</h2>", 1)[1].split("</tbody>", 1)[0]
    assert data_rows.count("<td>") == 4 and "train|x" in "".join(_parse(data_rows).text)
    # Names and URIs are code, verbatim (a backtick in one does not end it); the hyperparameters' fence holds.
    codes = [c for c in rendered.split("<code>")[1:]]
    assert any(c.startswith("churn-xgb-`1`</code>") for c in codes)
    assert "<pre><code class=\"language-json\">" in rendered and "&lt;script&gt;x&lt;/script&gt;" in rendered


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"ML_TARGET": "aws", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws"}',
                       "CHURN_LAKE_BUCKET": "churn-lake"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="churn-lake")
        yield boto3.client("s3")


def test_write_report_uploads_the_page_as_utf8_html(aws, monkeypatch):
    monkeypatch.setattr(monitoring_report, "HISTORY_DAYS", 2)  # each day looked for is a HEAD through a new S3 hook
    spec = importlib.util.spec_from_file_location("churn_monitoring_dag", REPO / "dags" / "churn_monitoring.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_report = module.churn_monitoring().get_task("write_report")
    aws.put_object(Bucket="churn-lake", Key=f"monitoring/daily/dt={DS}/summary.json", Body=json.dumps(_summary()))
    result = write_report.python_callable(_decision(), ds=DS, params={})
    head = aws.head_object(Bucket="churn-lake", Key=f"monitoring/reports/dt={DS}/report.html")
    assert head["ContentType"] == monitoring_report.CONTENT_TYPE == "text/html; charset=utf-8"
    assert result["report"] == f"s3://churn-lake/monitoring/reports/dt={DS}/report.html"
    assert "&lt;script&gt;" in aws.get_object(Bucket="churn-lake", Key=f"monitoring/reports/dt={DS}/report.html")[
        "Body"].read().decode("utf-8")
