"""Print what the local batch chain produced: holdout metrics, predictions, quarantine, timings."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
from churn_ml import lake

lake.quiet_logs()  # the S3 hook's "credentials retrieved" lines are not the summary's

from churn_ml import registry  # noqa: E402
from churn_ml.dag_support import MODEL_POINTER_KEY, MONITORING, MONITORING_REPORTS  # noqa: E402
from churn_ml.registry import interruptions_of  # noqa: E402
from churn_ml.settings import settings  # noqa: E402
from local_aws import lake_files  # noqa: E402
from local_aws.common import control_plane, read_state  # noqa: E402

# The holdout metrics the summary prints, as churn_train.py reports them and the registry records them.
HOLDOUT = ("holdout:auc", "holdout:pr_auc", "holdout:logloss", "holdout:best_single_feature_auc")


def missing_metrics(model: dict) -> list[str]:
    """The metrics of ``HOLDOUT`` the production pointer's record lacks (empty: none)."""
    return [name for name in HOLDOUT if name not in model.get("metrics", {})]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ds", required=True)
    parser.add_argument("--timings", type=Path)
    args = parser.parse_args()
    pointer = f"{settings.lake}/{MODEL_POINTER_KEY}"
    model = lake.read_json(pointer)  # the production model churn_training published
    features = lake.read_json(f"{settings.lake}/_runs/churn_features/ds={args.ds}/summary.json")
    marker = lake.read_json(f"{settings.lake}/predictions/dt={args.ds}/_SUCCESS")
    m = model["metrics"]
    print("\n=== churn batch chain on the local target: done ===")
    print(f"model            {model['training_job_name']}  ({model['model_data_url']})")
    # Not the AWS libraries' chatter while the registry answers (connection found, deprecations).
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        versions = registry.list_versions()
    latest = versions[-1]
    print(f"registry         {len(versions)} version(s); newest v{latest['ModelPackageVersion']} "
          f"{latest['ModelApprovalStatus']}: {latest['ApprovalDescription']}")
    print(f"                 model card {lake_files.local_path(latest['CardUri'])}")
    job = read_state(control_plane("sagemaker", "training-jobs", latest["TrainingJobName"]) / "describe.json")
    if job:
        print(f"spot training    {interruptions_of(job)} interruption(s); {job['BillableTimeInSeconds']} s billable "
              f"of {job['TrainingTimeInSeconds']} s")
    missing = missing_metrics(model)
    if missing:  # said, not hidden: the record publish_model wrote lacks what the registry should have given it
        print(f"holdout          MISSING {', '.join(missing)} in {lake_files.local_path(pointer)} (it has {sorted(m)}): "
              f"registry v{model.get('model_package_version')} was published without them; see churn_training's "
              "register_model and publish_model logs", file=sys.stderr)
    else:
        print(
            f"holdout          AUC {m['holdout:auc']:.4f}  PR-AUC {m['holdout:pr_auc']:.4f}  "
            f"logloss {m['holdout:logloss']:.4f}  (best single feature AUC {m['holdout:best_single_feature_auc']:.4f})"
        )
    print(f"predictions      {marker['rows']} customers scored for {args.ds} in {marker['objects']} file(s)")
    print(f"                 {lake_files.local_path(f'{settings.lake}/predictions/dt={args.ds}/')}")
    summarize_endpoint(args.ds)
    summarize_monitoring(args.ds)
    summarize_cost(args.ds)
    quarantined = {e: s["quarantined"] for e, s in features["entities"].items()}
    print(f"quarantined      {quarantined} (reasons in {lake_files.local_path(f'{settings.lake}/errors/')})")
    if args.timings and args.timings.exists():
        rows = [line.split("\t") for line in args.timings.read_text().splitlines() if line]
        print("wall time        " + ", ".join(f"{name} {secs}s" for name, secs in rows)
              + f"; total {sum(int(s) for _, s in rows)}s")
    return 1 if missing else 0


def summarize_cost(ds: str) -> None:
    """What the date's DAG runs cost, from the ledger's records (one per job; priced from the table, docs/cost.md),
    with the final training job's measured spot saving and the batch cost per 1,000 predictions."""
    from churn_ml.cost import ledger, recorder

    records = recorder.read_records(f"{settings.lake}/{ledger.RECORDS_PREFIX}date={ds}/")
    if not records:
        print("cost             no ledger records for this date")
        return
    total = ledger.totals(records)
    by_dag = ", ".join(f"{dag} {usd:.4f}" for dag, usd in total["by_dag"].items())
    print(f"cost             {total['usd']:.4f} USD for {total['records']} job(s): {by_dag}")
    by_task = {}
    for record in records:
        key = f"{record['dag_id']}.{record['task_id']}"
        by_task[key] = by_task.get(key, 0.0) + record["usd"]
    print("                 " + ", ".join(f"{task} {usd:.4f}" for task, usd in sorted(by_task.items())))
    training = recorder.training_cost([r for r in records if r["dag_id"] == "churn_training"],
                                      training_task="train_model", tuning_task="tune_hyperparameters")
    for label, part in (("final training", training["training"]), ("tuning", training["tuning"])):
        if part and part["spot_saving"] is not None:
            print(f"                 {label}: {part['billable_seconds']:.0f} s billable of {part['training_seconds']:.0f} s "
                  f"on {part['training_jobs']} job(s): measured spot saving {100 * part['spot_saving']:.1f}%")
    today = dt.datetime.now(dt.UTC).date().isoformat()  # the endpoint's and the stream's days are real UTC days
    for record in recorder.read_records(f"{settings.lake}/{ledger.RECORDS_PREFIX}date={today}/churn_monitoring/record_costs/"):
        used = ", ".join(f"{line['quantity']:.3f} {line['unit']} of {line['item']}" for line in record["lines"])
        print(f"                 {record['resource']} on {today} until {record['until'][11:19]} UTC: "
              f"{record['usd']:.4f} USD ({used})")
    with contextlib.suppress(FileNotFoundError, KeyError, ValueError):
        rows = lake.read_json(f"{settings.lake}/predictions/dt={ds}/_SUCCESS")["rows"]
        batch = total["by_dag"].get("churn_batch_scoring", 0.0)
        print(f"                 batch scoring {ledger.cost_per_1000_predictions(batch, rows):.6f} USD per 1,000 predictions")


def summarize_monitoring(ds: str) -> None:
    """The monitoring run of ``ds``: drift per source, the decision, and the report to open."""
    summary_uri = f"{settings.lake}/{MONITORING}dt={ds}/summary.json"
    if not lake.exists(summary_uri):
        print("monitoring       no run for this date")
        return
    summary = lake.read_json(summary_uri)
    decision = lake.read_json(f"{settings.lake}/{MONITORING_REPORTS}dt={ds}/decision.json")
    sources = ", ".join(f"{name} {found['rows']} rows (score PSI {found['score']['psi']:.3f})" if found["rows"]
                        else f"{name} no data" for name, found in summary["sources"].items())
    print(f"monitoring       model v{summary['model_version']}: {sources}")
    print(f"                 decision: {'RETRAIN' if decision['retrain'] else 'no retraining'} ({decision['reason']})")
    print(f"                 report {lake_files.local_path(f'{settings.lake}/{MONITORING_REPORTS}dt={ds}/report.html')}")


def summarize_endpoint(ds: str) -> None:
    """The endpoint the training DAG deployed, and a few of the day's customers scored through it
    with boto3's sagemaker-runtime client, next to what batch transform gave them."""
    from local_aws import endpoints

    if settings.endpoint_name not in endpoints.list_endpoints():
        print("endpoint         none deployed")
        return
    d = endpoints.describe_endpoint(settings.endpoint_name)
    local = d["Local"]
    print(f"endpoint         {d['EndpointName']} {d['EndpointStatus']} serving v{local['ModelPackageVersion']} "
          f"({d['EndpointConfigName']}, {len(local['Instances'])} instance(s)); standby {local['Standby'] or '-'}")
    last = local.get("LastDeployment") or {}
    print(f"                 last deployment: {last.get('EndpointConfigName')} {last.get('Status')}")
    if d["EndpointStatus"] != "InService":
        return
    first = sorted(lake.list_keys(f"{settings.lake}/scoring_input/dt={ds}/"))
    first = [k for k in first if k.endswith(".csv")][0]
    rows = lake.read_text(first).splitlines()[:5]
    answer = endpoints.runtime_client().invoke_endpoint(
        EndpointName=d["EndpointName"], ContentType="text/csv", Accept="text/csv", Body="\n".join(rows) + "\n"
    )
    online = dict(line.split(",") for line in answer["Body"].read().decode().splitlines())
    batch = dict(line.split(",") for line in lake.read_text(
        first.replace("/scoring_input/", "/predictions/", 1) + ".out").splitlines())
    same = sum(abs(float(online[c]) - float(batch[c])) <= 2e-6 for c in online)
    print(f"                 {len(online)} customers scored through boto3 sagemaker-runtime at "
          f"{local['RuntimeUrl']}: {same} match batch transform")
    print("                 stop it: python -m local_aws.endpoints delete --all")


if __name__ == "__main__":
    raise SystemExit(main())
