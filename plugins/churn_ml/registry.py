"""Model registry: SageMaker Model Registry (the control plane's, on the local target).

A version is one trained model with its approval status (``Approved`` or ``Rejected`` by the
quality gate, with the reason), its metrics and the champion's metrics on the same holdout, and a
model card (``card.json``, ``card.md``, ``model_card.png``) under ``<lake>/registry/<group>/v<NNNN>/``
on both targets. On AWS the version is a model package in the group (``ModelApprovalStatus``,
``ApprovalDescription``, ``CustomerMetadataProperties`` with the training job, data date, tuning job
and every metric of the model (``Metrics``, read back the same from any lookup), ``ModelMetrics``
pointing at the evaluation, ``DriftCheckBaselines`` at the
monitoring baseline: ``baseline.json`` under ``<lake>/registry/<group>/baselines/<training job>/``,
which the monitoring job compares each day's data with). A version registered before baselines were
stored has none: its ``BaselineUri`` is None.

Registering is idempotent per training job: a retried task finds the version it registered. That
version is found among the ListModelPackages summaries by its description (no Describe of the
others), and CreateModelPackage carries a ClientToken derived from the registration
(``registration_token``), so a create that went through while its task failed, or that races another
attempt, returns that package instead of a second version. The version found again is the one a
fresh registration returns: its metrics, approval and card are read from the registry, so a rerun
publishes and summarizes the same record (a version registered when only the headline metrics were
stored gets the rest added from the training job's, which are the same). Lookups ask ListModelPackages for what
they need (the group, Approved only, newest first) and describe only what they use; only the full
listings (``list_versions``, ``trained_before``: every version's data date and tuning job) describe
every version.

Errors no retry can fix (a gate without the holdout metric, an unknown approval status, publishing a
model that is not Approved) are ``RegistryError``, a ``CannotSucceedOnRetry``: the functions the
churn_training tasks call (``failing_fast``) turn them into ``AirflowFailException``, so the task fails
on its first try; throttling, timeouts and service errors keep their retries.

CLI::

    python -m churn_ml.registry list [--group churn-xgboost]
    python -m churn_ml.registry show <version> [--group churn-xgboost]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator

from churn_ml import lake, model_card, naming
from churn_ml import settings as cfg
from churn_ml.errors import CannotSucceedOnRetry, failing_fast

DEFAULT_GROUP = "churn-xgboost"
APPROVED, REJECTED = "Approved", "Rejected"
PAGE_SIZE = 100  # ListModelPackages' largest MaxResults
# CustomerMetadataProperties holds at most 50 entries; three of them identify the version (training
# job, data date, tuning job), the rest are its metrics (churn_train.py reports 11 of its own).
MAX_PROPERTIES = 50

log = logging.getLogger(__name__)


class RegistryError(CannotSucceedOnRetry, ValueError):
    """A decision, registration or publication the registry refuses; the same inputs are refused on every
    retry. The message says what to fix."""


def group_name() -> str:
    return cfg._get("CHURN_MODEL_PACKAGE_GROUP", DEFAULT_GROUP) or DEFAULT_GROUP


def version_prefix(group: str, version: int) -> str:
    return f"{cfg.settings.lake}/registry/{group}/v{version:04d}"


def baseline_uri(group: str, training_job_name: str) -> str:
    """Where the monitoring baseline of ``training_job_name``'s version is stored.

    Named after the training job, not the version number: CreateModelPackage records the URI
    (``DriftCheckBaselines``, which no update can change) before SageMaker has numbered the version.
    The version's card links to it.
    """
    return f"{cfg.settings.lake}/registry/{group}/baselines/{training_job_name}/baseline.json"


def _sagemaker():
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=cfg.settings.aws_conn_id)


# ---------------------------------------------------------------- reading


def _from_package(package: dict) -> dict:
    meta = package.get("CustomerMetadataProperties", {})
    container = package.get("InferenceSpecification", {}).get("Containers", [{}])[0]
    return {
        "ModelPackageGroupName": package["ModelPackageGroupName"],
        "ModelPackageVersion": package["ModelPackageVersion"],
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelApprovalStatus": package["ModelApprovalStatus"],
        "ApprovalDescription": package.get("ApprovalDescription", ""),
        "CreationTime": str(package.get("CreationTime", "")),
        "ModelDataUrl": container.get("ModelDataUrl", ""),
        "ImageUri": container.get("Image", ""),
        "TrainingJobName": meta.get("training_job_name", ""),
        "DataDate": meta.get("data_date", ""),
        "TuningJobName": meta.get("tuning_job_name", ""),
        "Metrics": _metrics_of(meta),
        "CardUri": f"{version_prefix(package['ModelPackageGroupName'], package['ModelPackageVersion'])}/card.md",
        "EvaluationUri": package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", ""),
        # None: registered before baselines were stored, so there is nothing to monitor against.
        "BaselineUri": package.get("DriftCheckBaselines", {}).get("ModelDataQuality", {}).get("Statistics", {})
                              .get("S3Uri") or None,
    }


def _metrics_of(properties: dict[str, str]) -> dict[str, float]:
    """The metrics among a version's CustomerMetadataProperties: the keys named ``<split>:<metric>``."""
    return {k: float(v) for k, v in properties.items() if ":" in k}


def _summaries(client, group: str, *, status: str | None = None, newest_first: bool = False) -> Iterator[dict]:
    """The group's versions as ListModelPackages summaries (number, ARN, status, description; no
    Describe), only those with approval ``status`` if given, in creation (= version) order."""
    request = {"ModelPackageGroupName": group, "SortBy": "CreationTime",
               "SortOrder": "Descending" if newest_first else "Ascending"}
    if status:
        request["ModelApprovalStatus"] = status
    for page in client.get_paginator("list_model_packages").paginate(**request, PaginationConfig={"PageSize": PAGE_SIZE}):
        yield from page["ModelPackageSummaryList"]


def _describe(client, summary: dict) -> dict:
    return _from_package(client.describe_model_package(ModelPackageName=summary["ModelPackageArn"]))


def _aws_versions(group: str, *, status: str | None = None, newest_first: bool = False) -> Iterator[dict]:
    """The versions ``_summaries`` lists, each described when the caller gets to it."""
    client = _sagemaker().conn
    for summary in _summaries(client, group, status=status, newest_first=newest_first):
        yield _describe(client, summary)


def list_versions(group: str | None = None) -> list[dict]:
    """Every version of the group, oldest first."""
    group = group or group_name()
    return sorted(_aws_versions(group), key=lambda v: v["ModelPackageVersion"])


def show_version(version: int, group: str | None = None) -> dict:
    group = group or group_name()
    client = _sagemaker().conn
    summary = next((s for s in _summaries(client, group, newest_first=True) if s["ModelPackageVersion"] == version),
                   None)
    found = [_describe(client, summary)] if summary else []
    if not found:
        raise LookupError(f"model package group {group} has no version {version}")
    return found[0]


def latest_approved(group: str | None = None) -> dict | None:
    """The champion: the newest Approved version, or None before the first approval."""
    group = group or group_name()
    return next(_aws_versions(group, status=APPROVED, newest_first=True), None)


def _by_data_date_before(versions: Iterable[dict], ds: str) -> list[dict]:
    older = [v for v in versions if v.get("DataDate", "") < ds]
    return sorted(older, key=lambda v: (v.get("DataDate", ""), v["ModelPackageVersion"]))


def trained_before(ds: str, group: str | None = None) -> list[dict]:
    """The versions trained on data older than ``ds`` (their ``DataDate`` < ds), oldest data first.

    What a training run for ``ds`` compares with and warm-starts from: a function of the date, not
    of what ran last, so a rerun of ``ds`` asks for the same jobs (and re-attaches to them) even
    after its own first run registered a version, and a run for an older date never takes a newer
    model as its champion.
    """
    return _by_data_date_before(list_versions(group), ds)


def champion_for(ds: str, group: str | None = None) -> dict | None:
    """The newest Approved version trained on data older than ``ds``, or None.

    Newest by data date, not by registration (a backfill registers older data later), so every
    Approved version is looked at; on AWS only those (ListModelPackages filters on the status).
    """
    group = group or group_name()
    approved = _aws_versions(group, status=APPROVED)
    older = _by_data_date_before(approved, ds)
    return older[-1] if older else None


@failing_fast
def baseline_for(ds: str, group: str | None = None) -> dict:
    """What the training run for ``ds`` starts from: the champion it is compared with on the same
    holdout (``champion_for``) and the tuning job it warm-starts from (that of the version with the
    newest data that has one). Both among the versions trained on data older than ``ds``, so a rerun
    of the date asks for the same jobs."""
    earlier = trained_before(ds, group)
    champion = champion_for(ds, group)
    warm_start = next((v["TuningJobName"] for v in reversed(earlier) if v.get("TuningJobName")), "")
    log.info(
        "champion: %s; warm start from: %s",
        f"v{champion['ModelPackageVersion']} ({champion['ModelDataUrl']})" if champion else "none (first model)",
        warm_start or "none",
    )
    return {
        "model_data_url": champion["ModelDataUrl"] if champion else "",
        "version": champion["ModelPackageVersion"] if champion else None,
        "warm_start": warm_start,
    }


# ---------------------------------------------------------------- the gate


def gate(metrics: dict[str, float], *, floor: float, tolerance: float) -> tuple[str, str]:
    """Approved or Rejected, and why: the absolute AUC floor, then no worse than the champion
    (scored on the same holdout) by more than ``tolerance``. Without a comparable champion (the
    first model, or one trained on other features) only the floor applies."""
    if "holdout:auc" not in metrics:
        raise RegistryError(
            f"no holdout:auc among the training job's metrics {sorted(metrics)}: the gate decides on the holdout. "
            "Was the holdout channel given (the training set's holdout/ folder) and does churn_train.py print "
            "'holdout:auc: <value>' (see the job's log)? Retrain once it does.")
    auc = metrics["holdout:auc"]
    if auc < floor:
        return REJECTED, f"holdout AUC {auc:.4f} is below the floor {floor:.4f}"
    champion = metrics.get("champion:holdout:auc")
    if champion is None:
        return APPROVED, f"holdout AUC {auc:.4f} clears the floor {floor:.4f} (no champion to compare with: floor only)"
    if auc < champion - tolerance:
        return REJECTED, (
            f"holdout AUC {auc:.4f} is worse than the champion's {champion:.4f} on the same holdout "
            f"by {champion - auc:.4f}, more than the tolerance {tolerance:.4f}"
        )
    return APPROVED, (
        f"holdout AUC {auc:.4f} clears the floor {floor:.4f} and is within {tolerance:.4f} of the champion's "
        f"{champion:.4f} (change {auc - champion:+.4f})"
    )


def interruptions_of(describe: dict) -> int:
    """How many spot interruptions a DescribeTrainingJob response records in the job's latest run.

    Only the latest run (from its last ``Starting`` transition on): the record's times, among them
    ``BillableTimeInSeconds`` which this number is reported with, are that run's too.
    """
    history = describe.get("SecondaryStatusTransitions", [])
    starts = [i for i, t in enumerate(history) if t.get("Status") == "Starting"]
    return sum(1 for t in history[starts[-1] if starts else 0:] if t.get("Status") == "Interrupted")


@failing_fast
def gate_training_job(job: dict, *, floor: float, tolerance: float) -> dict:
    """The gate's decision on a final training job (its DescribeTrainingJob answer): the metrics of
    its ``FinalMetricDataList``, and ``gate``'s status and reason; logs challenger against champion."""
    metrics = {m["MetricName"]: round(float(m["Value"]), 6) for m in job.get("FinalMetricDataList", [])}
    status, reason = gate(metrics, floor=floor, tolerance=tolerance)
    log.info("training job %s: %d spot interruption(s), %s s billable of %s s",
             job["TrainingJobName"], interruptions_of(job), job.get("BillableTimeInSeconds"),
             job.get("TrainingTimeInSeconds"))
    for name in sorted(k for k in metrics if k.startswith("holdout:")):
        champion = metrics.get(f"champion:{name}")
        log.info("%-32s challenger %.4f   champion %s", name, metrics[name],
                 "-" if champion is None else f"{champion:.4f}")
    if status == APPROVED:
        log.info("QUALITY GATE: APPROVED. %s", reason)
    else:
        log.warning("QUALITY GATE: REJECTED. %s. The model is registered as Rejected and is not published.", reason)
    return {"status": status, "reason": reason, "metrics": metrics}


@failing_fast
def publication(status: str, ds: str, force: bool, pointer_uri: str) -> tuple[bool, str]:
    """Whether a model trained on data up to ``ds`` may replace production, and why.

    Production only moves forward: an approved model is not published over one trained on newer data
    (``pointer_uri`` records the production model's ``ds``) unless ``force`` says so deliberately.
    Republishing the production model's own date (a rerun) is allowed: it is the same model.
    """
    current = lake.read_json(pointer_uri) if lake.exists(pointer_uri) else None
    serving = current and f"v{current.get('model_package_version')} (data up to {current.get('ds')})"
    newer = current is not None and str(current.get("ds", "")) > ds
    if status != APPROVED:
        return False, "not published: the quality gate rejected it" + (
            f"; besides, production serves {serving}, trained on newer data" if newer else "")
    if current is None:
        return True, "published: the first approved model"
    if newer:
        if force:
            return True, f"published over {serving}, which was trained on newer data than {ds}: forced (force_publish)"
        return False, (
            f"not published: production serves {serving}, trained on newer data than this model ({ds}); production "
            "only moves forward. To roll back to this model deliberately, trigger the run with force_publish=true"
        )
    return True, f"published: replaces {serving}"


@failing_fast
def publish(version: dict, ds: str, pointer_uri: str) -> dict:
    """Point production at ``version``, trained on data up to ``ds``: the record at ``pointer_uri``
    that batch scoring and deployment read, and ``publication`` holds the next model against.
    Only an Approved version: production never serves a model the gate rejected."""
    if version["ModelApprovalStatus"] != APPROVED:
        raise RegistryError(
            f"refusing to publish {version['ModelPackageGroupName']} v{version['ModelPackageVersion']}: it is "
            f"{version['ModelApprovalStatus']}, not {APPROVED} ({version.get('ApprovalDescription') or 'no reason'}). "
            "Only an approved model may serve: train one that passes the quality gate")
    record = {
        "ds": ds,
        "model_package_version": version["ModelPackageVersion"],
        "model_package_arn": version["ModelPackageArn"],
        "training_job_name": version["TrainingJobName"],
        "model_data_url": version["ModelDataUrl"],
        "evaluation_uri": version.get("EvaluationUri", ""),
        "baseline_uri": version.get("BaselineUri"),  # None for a version registered without one
        "metrics": version["Metrics"],
    }
    lake.write_json(pointer_uri, record)
    return record


class NotPublishedError(RegistryError, FileNotFoundError):
    """No production model, or one without what the caller needs: churn_training has to publish one."""


@failing_fast
def published_model(pointer_uri: str, *, with_baseline: bool = False) -> dict:
    """The production record at ``pointer_uri`` (what ``publish`` wrote), for batch scoring and monitoring.

    No record, or (``with_baseline``) one whose version was registered without a monitoring baseline,
    stays so until churn_training publishes a model: a retry of the task cannot find one."""
    if not lake.exists(pointer_uri):
        raise NotPublishedError(f"no published model at {pointer_uri}: run the churn_training DAG first")
    record = lake.read_json(pointer_uri)
    if with_baseline and not record.get("baseline_uri"):
        raise NotPublishedError(
            f"model v{record.get('model_package_version')} was published without a baseline (registered before "
            "monitoring existed): trigger churn_training to register one that has it")
    return record


# ---------------------------------------------------------------- writing


def registration_token(group: str, training_job_name: str, model_data_url: str) -> str:
    """CreateModelPackage's ClientToken for registering ``training_job_name``'s model in ``group``.

    Derived from what identifies the registration, never random: a retried registration sends the
    same token and SageMaker returns the package the first call created instead of a second version.
    32 hexadecimal characters (the service takes 1-36 of ``[a-zA-Z0-9-]``).
    """
    return naming.content_hash(
        {"group": group, "training_job_name": training_job_name, "model_data_url": model_data_url}, length=32
    )


def _description(training_job_name: str) -> str:
    """The version's ModelPackageDescription: ListModelPackages returns it, so it finds the version
    of a training job without a Describe of every version."""
    return f"churn XGBoost from {training_job_name}"


def _registered(client, group: str, training_job_name: str) -> dict | None:
    """The version registered for ``training_job_name`` (newest first: a retry looks for a recent one)."""
    for summary in _summaries(client, group, newest_first=True):
        if summary.get("ModelPackageDescription") == _description(training_job_name):
            version = _describe(client, summary)
            if version["TrainingJobName"] == training_job_name:
                return version
    return None


def _properties(training_job_name: str, data_date: str, tuning_job_name: str,
                metrics: dict[str, float]) -> dict[str, str]:
    """The version's CustomerMetadataProperties: what identifies it, and every metric it was registered with."""
    names = [k for k in metrics if ":" not in k]
    if names:
        raise RegistryError(f"metric names must read <split>:<metric> (how the registry tells them from its other "
                            f"properties), got {sorted(names)}: fix the training request's MetricDefinitions")
    # An empty value is left out: SageMaker takes 1-256 characters (a lookup reads a missing one as "").
    identity = {"training_job_name": training_job_name, "data_date": data_date, "tuning_job_name": tuning_job_name}
    properties = {**{k: v for k, v in identity.items() if v}, **{k: f"{v:.6f}" for k, v in sorted(metrics.items())}}
    if len(properties) > MAX_PROPERTIES:
        raise RegistryError(
            f"{len(metrics)} metrics do not fit a model package's CustomerMetadataProperties ({MAX_PROPERTIES} entries "
            f"with 3 for the version's identity): register fewer (the training request's MetricDefinitions)")
    return properties


def _completed(client, version: dict, training_job_name: str, data_date: str, tuning_job_name: str,
               metrics: dict[str, float]) -> dict:
    """``version``, found again for ``training_job_name``, with every metric a fresh registration records.

    A version registered when only the headline metrics were stored lacks the others (the summary
    and the e2e checks read ``holdout:best_single_feature_auc``): they are added to the package from
    the training job's metrics, the same job's, so the version found again equals a fresh one. A
    metric the version has keeps the value it was registered with.
    """
    missing = {k: v for k, v in metrics.items() if k not in version["Metrics"]}
    if not missing:
        return version
    stored = {"training_job_name": version["TrainingJobName"], "data_date": version["DataDate"] or data_date,
              "tuning_job_name": version["TuningJobName"] or tuning_job_name}
    properties = _properties(stored["training_job_name"], stored["data_date"], stored["tuning_job_name"],
                             {**missing, **version["Metrics"]})
    log.info("v%d was registered without %s: adding them from training job %s", version["ModelPackageVersion"],
             ", ".join(sorted(missing)), training_job_name)
    # Status and description again: an update that omits them resets them on moto (SageMaker keeps them).
    update = {"ApprovalDescription": version["ApprovalDescription"]} if version["ApprovalDescription"] else {}
    client.update_model_package(ModelPackageArn=version["ModelPackageArn"],
                                ModelApprovalStatus=version["ModelApprovalStatus"],
                                CustomerMetadataProperties=properties, **update)
    return version | {"Metrics": _metrics_of(properties)}


@failing_fast
def register(
    *, model_data_url: str, image_uri: str, training_job_name: str, approval: str, reason: str,
    metrics: dict[str, float], card: dict, card_plot: bytes | None, evaluation_uri: str, data_date: str,
    tuning_job_name: str = "", group: str | None = None, baseline: dict | None = None,
) -> dict:
    """Register a version (or return the one this training job already registered).

    ``data_date`` is the snapshot date the model's training data ends at (the DAG run's ds);
    ``baseline`` the training job's monitoring baseline (``baseline.json``), stored at ``baseline_uri``
    before the version is created and recorded in it as ``DriftCheckBaselines``; None registers a
    version without one.
    """
    if approval not in (APPROVED, REJECTED):
        raise RegistryError(f"approval must be {APPROVED} or {REJECTED} (the quality gate's decision), got {approval!r}")
    group = group or group_name()

    def write_card(number: int, status: str, why: str, baseline_at: str | None) -> None:
        model_card.write(version_prefix(group, number), {
            **card, "version": number, "status": status, "reason": why, "model_data_url": model_data_url,
            "training_job_name": training_job_name, "baseline_uri": baseline_at,
        }, card_plot)

    properties = _properties(training_job_name, data_date, tuning_job_name, metrics)
    hook = _sagemaker()
    existing = _registered(hook.conn, group, training_job_name)
    if existing:
        existing = _completed(hook.conn, existing, training_job_name, data_date, tuning_job_name, metrics)
        number = existing["ModelPackageVersion"]
        if not lake.exists(f"{version_prefix(group, number)}/card.json"):  # its first attempt died before the card
            write_card(number, existing["ModelApprovalStatus"], existing.get("ApprovalDescription", ""),
                       existing["BaselineUri"])
        return existing
    drift_baselines = {}
    if baseline is not None:
        stored_at = baseline_uri(group, training_job_name)
        # The job's own name: the container does not always know it (TRAINING_JOB_NAME is SageMaker's).
        # Not lake.write_json: its sorted keys would lose the features' order (the training data's columns).
        stored = json.dumps({**baseline, "training_job_name": training_job_name}, indent=1)
        lake.write_bytes(stored_at, stored.encode("utf-8"))
        drift_baselines = {"DriftCheckBaselines": {"ModelDataQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": stored_at}}}}
    hook.create_model_package_group(group, "Churn XGBoost models (registered by the churn_training DAG)")
    response = hook.conn.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=_description(training_job_name),
        ModelApprovalStatus=approval,
        InferenceSpecification={
            "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}}},
        CustomerMetadataProperties=properties,
        ClientToken=registration_token(group, training_job_name, model_data_url),
        **drift_baselines,
    )
    package = hook.conn.describe_model_package(ModelPackageName=response["ModelPackageArn"])
    if reason:
        # The properties again: they identify the training job (what makes register idempotent),
        # and an emulator that resets them on update (moto does) must not lose them.
        hook.conn.update_model_package(
            ModelPackageArn=response["ModelPackageArn"], ModelApprovalStatus=approval,
            ApprovalDescription=reason[:1024], CustomerMetadataProperties=properties,
        )
    number = package["ModelPackageVersion"]
    # The metrics as stored (6 decimals), as a lookup reads them: a retry finding this version returns the same.
    record = _from_package(package) | {"ApprovalDescription": reason[:1024],
                                       "Metrics": _metrics_of(properties)}
    write_card(number, approval, reason, record["BaselineUri"])
    return record


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_ml.registry", description=__doc__.split("\n")[0])
    parser.add_argument("--group", default=None, help=f"model package group (default: {DEFAULT_GROUP})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the versions, oldest first")
    show = sub.add_parser("show", help="show one version with its metrics and card location")
    show.add_argument("version", type=int)
    args = parser.parse_args(argv)
    out = sys.stdout  # the answer; what the AWS libraries log while it is fetched goes to stderr
    if args.command == "list":
        with contextlib.redirect_stdout(sys.stderr):
            versions = list_versions(args.group)
        if not versions:
            print(f"no versions in model package group {args.group or group_name()}", file=out)
            return 0
        print(f"{'version':>7}  {'status':<9} {'holdout AUC':>11}  {'created':<25} training job", file=out)
        for v in versions:
            auc = v["Metrics"].get("holdout:auc")
            print(f"{v['ModelPackageVersion']:>7}  {v['ModelApprovalStatus']:<9} "
                  f"{'' if auc is None else f'{auc:.4f}':>11}  {v['CreationTime'][:25]:<25} {v['TrainingJobName']}",
                  file=out)
        return 0
    try:
        with contextlib.redirect_stdout(sys.stderr):
            version = show_version(args.version, args.group)
        print(json.dumps(version, indent=1, sort_keys=True), file=out)
    except LookupError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
