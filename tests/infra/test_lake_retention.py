"""Every part of the lake either expires or is kept on purpose (issue 23: the lake kept everything).

The prefixes come from ``LAKE_ACCESS`` (plugins/churn_ml/dag_support.py), the table the IAM checks use,
so a prefix new code writes fails here until the template's LakeBucket has a lifecycle rule for it or
``KEPT`` says why it stays. Each expiry is a template Parameter with a default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cfn_template import Tagged, load

from churn_ml import dag_support as ds

REPO = Path(__file__).resolve().parents[2]
# The prefixes kept without an expiry, and why. Noncurrent (replaced) versions still expire everywhere.
KEPT = {
    ds.RAW: "the upstream export: every other prefix is rebuilt from it",
    ds.CLEAN: "the features job reads the whole history of clean customers and events (every dt before ds)",
    ds.FEATURES: "training reads lookback_days of snapshots; the stream and the monitoring job read them too",
    ds.LABELS: "training sets join them over lookback_days, and the monitoring job's realized quality reads them",
    ds.TRAINING_SETS: "what each registered version was trained on (its card names it): to reproduce or audit it",
    ds.MODELS: "the artifacts of registered versions, which the registry, the endpoint and a rollback point at",
    ds.REGISTRY: "the model cards and monitoring baselines of registered versions",
    ds.PUBLISHED: "the production model pointer, one object",
    ds.PREDICTIONS: "the business output, and the record of what was predicted; realized quality reads it 30 days on",
    ds.MONITORING: "one small summary a day; decisions and reports read the days before",
    ds.MONITORING_REPORTS: "one report and decision a day: the monitoring record",
    ds.LINEAGE_EVENTS: "the lineage of the outputs kept above (predictions, models, reports): their record of what "
                       "produced them; one small object per task event",
    ds.COSTS: "the cost ledger: one small record per job, what explains each month's bill",
    ds.STREAMING_STATE: "its checkpoint is the running query's (Spark prunes its own old batches; expiring its "
                        "metadata would stop the job resuming); its runs/ progress expires",
}


def lake_prefixes() -> set[str]:
    return {prefix for access in ds.role_access().values() for prefix in access}


@pytest.fixture(scope="module")
def template() -> dict:
    return load()


@pytest.fixture(scope="module")
def rules(template) -> list[dict]:
    return template["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]


def expiring(rules: list[dict]) -> dict[str, dict]:
    return {rule["Prefix"]: rule for rule in rules if "Prefix" in rule and "ExpirationInDays" in rule}


def _parameter(template: dict, value, where: str) -> dict:
    assert isinstance(value, Tagged) and "!Ref" in value, f"{where}: a template Parameter (!Ref), got {value!r}"
    parameter = template["Parameters"].get(value["!Ref"])
    assert parameter is not None, f"{where}: no Parameter {value['!Ref']}"
    assert parameter["Type"] == "Number" and isinstance(parameter.get("Default"), int), f"{where}: {parameter}"
    return parameter


def test_every_lake_prefix_expires_or_is_kept_with_a_reason(rules):
    rule_prefixes = expiring(rules)
    assert set(KEPT) <= lake_prefixes(), f"KEPT names prefixes no role uses: {sorted(set(KEPT) - lake_prefixes())}"
    for prefix in sorted(lake_prefixes()):
        covering = [p for p in rule_prefixes if prefix.startswith(p)]
        if covering:
            assert prefix not in KEPT, f"{prefix} expires ({covering[0]}) but KEPT says it is kept"
        else:
            assert len(KEPT.get(prefix, "")) > 20, (
                f"{prefix} is in LAKE_ACCESS but nothing expires it: add a lifecycle rule with a retention Parameter "
                "to LakeBucket in infra/cloudformation/churn.yaml, or say in KEPT why it is kept")


def test_every_expiry_rule_is_for_a_prefix_the_code_uses_and_its_retention_a_parameter(template, rules):
    prefixes = lake_prefixes()
    assert len({rule["Id"] for rule in rules}) == len(rules)
    for prefix, rule in expiring(rules).items():
        assert rule["Status"] == "Enabled" and prefix.endswith("/"), rule
        assert any(p.startswith(prefix) or prefix.startswith(p) for p in prefixes), (
            f"rule {rule['Id']} expires {prefix}, which no role of LAKE_ACCESS uses (a typo, or a prefix gone)")
        _parameter(template, rule["ExpirationInDays"], rule["Id"])
    # The streaming job's progress expires, its checkpoint beside it does not.
    assert f"{ds.STREAMING_STATE}runs/" in expiring(rules)
    assert not any(p.startswith(f"{ds.STREAMING_STATE}checkpoint") for p in expiring(rules))


def test_the_whole_bucket_drops_replaced_versions_delete_markers_and_abandoned_uploads(template, rules):
    whole = [rule for rule in rules if "Prefix" not in rule and "Filter" not in rule]
    assert len(whole) == 1, whole
    rule = whole[0]
    _parameter(template, rule["NoncurrentVersionExpiration"]["NoncurrentDays"], "replaced versions")
    _parameter(template, rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"], "incomplete uploads")
    assert rule["ExpiredObjectDeleteMarker"] is True


def test_the_capture_and_rejected_records_expire_within_months_and_leave_no_old_version(template, rules):
    """Customer data: the capture (ids and features of each sampled request) and raw rejected records."""
    for prefix, low, high in ((ds.CAPTURE, 30, 90), ("errors/", 7, 90)):
        rule = expiring(rules)[prefix]
        default = _parameter(template, rule["ExpirationInDays"], rule["Id"])["Default"]
        assert low <= default <= high, f"{prefix} kept {default} days by default"
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert all(q.startswith("errors/") for q in (*ds.QUARANTINE, ds.STREAM_ERRORS))


def test_the_docs_say_how_long_each_prefix_is_kept(rules):
    docs = (REPO / "docs/infrastructure.md").read_text()
    # From "**Retention.**" to the next paragraph that starts in bold (its table included).
    section = docs.split("**Retention.**", 1)[1].split("\n\n**", 1)[0] if "**Retention.**" in docs else ""
    missing = [p for p in [*expiring(rules), *KEPT] if f"`{p}`" not in section]
    assert not missing, f"docs/infrastructure.md's **Retention.** paragraph does not name {missing}"
