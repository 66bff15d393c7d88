"""Model registry: SageMaker Model Registry on AWS; the same records in the lake on the local target.

A version is one trained model with its approval status (``Approved`` or ``Rejected`` by the
quality gate, with the reason), its metrics and the champion's metrics on the same holdout, and a
model card (``card.json``, ``card.md``, ``model_card.png``) under ``<lake>/registry/<group>/v<NNNN>/``
on both targets. On AWS the version is a model package in the group (``ModelApprovalStatus``,
``ApprovalDescription``, ``CustomerMetadataProperties`` with the headline metrics and the card's
URI, ``ModelMetrics`` pointing at the evaluation); locally ``package.json`` holds the same fields.

Registering is idempotent per training job: a retried task finds the version it registered.

CLI::

    python -m churn_ml.registry list [--group churn-xgboost]
    python -m churn_ml.registry show <version> [--group churn-xgboost]
"""

from __future__ import annotations

import argparse
import json
import sys

from churn_ml import lake
from churn_ml import settings as cfg
from churn_ml.local.common import arn, now

DEFAULT_GROUP = "churn-xgboost"
APPROVED, REJECTED = "Approved", "Rejected"
HEADLINE = ("holdout:auc", "holdout:pr_auc", "holdout:logloss", "holdout:brier", "holdout:lift_at_10")


def group_name() -> str:
    return cfg._get("CHURN_MODEL_PACKAGE_GROUP", DEFAULT_GROUP) or DEFAULT_GROUP


def version_prefix(group: str, version: int) -> str:
    return f"{cfg.settings.lake}/registry/{group}/v{version:04d}"


def _sagemaker():
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=cfg.settings.aws_conn_id)


# ---------------------------------------------------------------- reading


def _local_versions(group: str) -> list[dict]:
    keys = [k for k in lake.list_keys(f"{cfg.settings.lake}/registry/{group}/") if k.endswith("/package.json")]
    return sorted((lake.read_json(k) for k in keys), key=lambda v: v["ModelPackageVersion"])


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
        "Metrics": {k: float(v) for k, v in meta.items() if ":" in k},
        "CardUri": meta.get("model_card", ""),
        "EvaluationUri": package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", ""),
    }


def list_versions(group: str | None = None) -> list[dict]:
    """Every version of the group, oldest first."""
    group = group or group_name()
    if cfg.is_local():
        return _local_versions(group)
    client = _sagemaker().conn
    versions = []
    for page in client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        for summary in page["ModelPackageSummaryList"]:
            versions.append(_from_package(client.describe_model_package(ModelPackageName=summary["ModelPackageArn"])))
    return sorted(versions, key=lambda v: v["ModelPackageVersion"])


def show_version(version: int, group: str | None = None) -> dict:
    found = [v for v in list_versions(group) if v["ModelPackageVersion"] == version]
    if not found:
        raise LookupError(f"model package group {group or group_name()} has no version {version}")
    return found[0]


def latest_approved(group: str | None = None) -> dict | None:
    """The champion: the newest Approved version, or None before the first approval."""
    approved = [v for v in list_versions(group) if v["ModelApprovalStatus"] == APPROVED]
    return approved[-1] if approved else None


def trained_before(ds: str, group: str | None = None) -> list[dict]:
    """The versions trained on data older than ``ds`` (their ``DataDate`` < ds), oldest data first.

    What a training run for ``ds`` compares with and warm-starts from: a function of the date, not
    of what ran last, so a rerun of ``ds`` asks for the same jobs (and re-attaches to them) even
    after its own first run registered a version, and a run for an older date never takes a newer
    model as its champion.
    """
    older = [v for v in list_versions(group) if v.get("DataDate", "") < ds]
    return sorted(older, key=lambda v: (v.get("DataDate", ""), v["ModelPackageVersion"]))


def champion_for(ds: str, group: str | None = None) -> dict | None:
    """The newest Approved version trained on data older than ``ds``, or None."""
    approved = [v for v in trained_before(ds, group) if v["ModelApprovalStatus"] == APPROVED]
    return approved[-1] if approved else None


# ---------------------------------------------------------------- the gate


def gate(metrics: dict[str, float], *, floor: float, tolerance: float) -> tuple[str, str]:
    """Approved or Rejected, and why: the absolute AUC floor, then no worse than the champion
    (scored on the same holdout) by more than ``tolerance``. Without a comparable champion (the
    first model, or one trained on other features) only the floor applies."""
    if "holdout:auc" not in metrics:
        raise ValueError(f"no holdout:auc among the metrics {sorted(metrics)}: was the holdout channel given?")
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


# ---------------------------------------------------------------- writing


def register(
    *, model_data_url: str, image_uri: str, training_job_name: str, approval: str, reason: str,
    metrics: dict[str, float], card: dict, card_plot: bytes | None, evaluation_uri: str, data_date: str,
    tuning_job_name: str = "", group: str | None = None,
) -> dict:
    """Register a version (or return the one this training job already registered).

    ``data_date`` is the snapshot date the model's training data ends at (the DAG run's ds).
    """
    if approval not in (APPROVED, REJECTED):
        raise ValueError(f"approval must be {APPROVED} or {REJECTED}, got {approval!r}")
    group = group or group_name()
    existing = [v for v in list_versions(group) if v["TrainingJobName"] == training_job_name]
    if existing:
        return existing[-1]
    if cfg.is_local():
        versions = _local_versions(group)
        number = versions[-1]["ModelPackageVersion"] + 1 if versions else 1
        record = {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": number,
            "ModelPackageArn": arn("sagemaker", "model-package", f"{group}/{number}"),
            "ModelApprovalStatus": approval,
            "ApprovalDescription": reason,
            "CreationTime": now(),
            "ModelDataUrl": model_data_url,
            "ImageUri": image_uri,
            "TrainingJobName": training_job_name,
            "DataDate": data_date,
            "TuningJobName": tuning_job_name,
            "Metrics": metrics,
            "CardUri": f"{version_prefix(group, number)}/card.md",
            "EvaluationUri": evaluation_uri,
        }
    else:
        hook = _sagemaker()
        properties = {"training_job_name": training_job_name, "data_date": data_date,
                      "tuning_job_name": tuning_job_name,
                      **{k: f"{v:.6f}" for k, v in metrics.items() if k in HEADLINE}}
        hook.create_model_package_group(group, "Churn XGBoost models (registered by the churn_training DAG)")
        response = hook.conn.create_model_package(
            ModelPackageGroupName=group,
            ModelPackageDescription=f"churn XGBoost from {training_job_name}",
            ModelApprovalStatus=approval,
            InferenceSpecification={
                "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}}},
            CustomerMetadataProperties=properties,
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
        record = _from_package(package) | {"ApprovalDescription": reason, "Metrics": metrics,
                                           "CardUri": f"{version_prefix(group, number)}/card.md"}
    prefix = version_prefix(group, number)
    full_card = {**card, "version": number, "status": approval, "reason": reason, "model_data_url": model_data_url,
                 "training_job_name": training_job_name}
    if card_plot:
        lake.write_bytes(f"{prefix}/model_card.png", card_plot)
        full_card["plot"] = f"{prefix}/model_card.png"
    lake.write_json(f"{prefix}/card.json", full_card)
    lake.write_bytes(f"{prefix}/card.md", render_card(full_card).encode("utf-8"))
    if cfg.is_local():
        lake.write_json(f"{prefix}/package.json", record)  # last: a version exists once its card does
    return record


def render_card(card: dict) -> str:
    """The model card as Markdown: what a reviewer reads before trusting the model."""
    metrics, champion = card.get("metrics", {}), card.get("champion_metrics", {})
    lines = [
        f"# Churn model v{card['version']}: {card['status']}", "",
        f"**Decision:** {card['reason']}", "",
        *([f"**Publication:** {card['publication']}", ""] if card.get("publication") else []),
        f"- training job: `{card['training_job_name']}`",
        f"- model: `{card['model_data_url']}`",
        f"- training set: `{card.get('training_set', '')}` (built for {card.get('ds', '')})", "",
        "## Data", "", "| split | rows | churn rate | snapshots |", "|---|---|---|---|",
    ]
    for split, stats in card.get("splits", {}).items():
        snaps = stats.get("snapshots", [])
        lines.append(f"| {split} | {stats['rows']} | {100 * stats['positive_rate']:.2f}% | "
                     f"{snaps[0] if snaps else ''} .. {snaps[-1] if snaps else ''} |")
    lines += ["", "## Holdout metrics", "", "| metric | this model | champion |", "|---|---|---|"]
    for name in sorted(k for k in metrics if k.startswith("holdout:")):
        other = champion.get(f"champion:{name}")
        lines.append(f"| {name} | {metrics[name]:.4f} | {'' if other is None else f'{other:.4f}'} |")
    lines += ["", "## Hyperparameters", "", "```json", json.dumps(card.get("hyperparameters", {}), indent=1, sort_keys=True),
              "```", "", "## Features", "", ", ".join(f"`{f}`" for f in card.get("features", [])), ""]
    if card.get("plot"):
        lines += ["## ROC and feature importance", "", "![ROC and feature importance](model_card.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_ml.registry", description=__doc__.split("\n")[0])
    parser.add_argument("--group", default=None, help=f"model package group (default: {DEFAULT_GROUP})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the versions, oldest first")
    show = sub.add_parser("show", help="show one version with its metrics and card location")
    show.add_argument("version", type=int)
    args = parser.parse_args(argv)
    if args.command == "list":
        versions = list_versions(args.group)
        if not versions:
            print(f"no versions in model package group {args.group or group_name()}")
            return 0
        print(f"{'version':>7}  {'status':<9} {'holdout AUC':>11}  {'created':<25} training job")
        for v in versions:
            auc = v["Metrics"].get("holdout:auc")
            print(f"{v['ModelPackageVersion']:>7}  {v['ModelApprovalStatus']:<9} "
                  f"{'' if auc is None else f'{auc:.4f}':>11}  {v['CreationTime'][:25]:<25} {v['TrainingJobName']}")
        return 0
    try:
        print(json.dumps(show_version(args.version, args.group), indent=1, sort_keys=True))
    except LookupError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
