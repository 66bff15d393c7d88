"""The ledger written from tasks: one record per job in the lake, and a DAG run's total.

``write_record`` prices a job's usage (``churn_ml.cost.usage``, from the service's own answer), writes the
record to ``_costs/records/date=<ds>/<dag_id>/<task_id>/<resource>.json`` (``ledger.records_key``: one S3
PUT, which readers see whole or not at all) and then removes the records under the task's prefix that an
earlier execution of the run wrote. An execution is the run and its clear number (``execution_of``):

- a retry that re-attached to its job writes the same key with the same content: no record added;
- a retry that had to start a new attempt (``-rN``) after a failed job keeps the failed job's record
  beside the new one: both were billed to this execution of the run;
- a rerun of the date (a clear, a backfill with ``--reprocess-behavior``) replaces the task's records:
  the new ones are written first, then the earlier execution's are deleted.

``run_records`` reads a run's records back; ``run_summary`` is the total a task log and the run's note show.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from churn_ml import lake
from churn_ml.cost import ledger
from churn_ml.cost.prices import PriceTable, load_prices
from churn_ml.cost.usage import Usage
from churn_ml.settings import settings

log = logging.getLogger(__name__)


def execution_of(context: Mapping[str, Any]) -> str:
    """``<run_id>/clear-<n>``: the run, and how many times it was cleared (Airflow's DagRun.clear_number)."""
    dag_run = context.get("dag_run")
    return f"{context['run_id']}/clear-{getattr(dag_run, 'clear_number', 0) or 0}"


@functools.cache
def _prices(region: str) -> PriceTable:
    return load_prices(region)


def price_table() -> PriceTable:
    """The price table of the region the Airflow AWS connection works in (``prices/<region>.json``)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    region = AwsGenericHook(aws_conn_id=settings.aws_conn_id, client_type="s3").conn_region_name or "us-east-1"
    return _prices(region)


def _uri(key: str) -> str:
    return f"{settings.lake}/{key}"


def write_record(context: Mapping[str, Any], *, resource: str, usages: Sequence[Usage], service: str | None = None,
                 model_version: str | None = None, predictions: int | None = None,
                 prices: PriceTable | None = None) -> dict[str, Any]:
    """Price ``usages`` of one job (``resource``), write its record for this task and date, and replace the
    task's records of earlier executions of the run (see the module docstring). Returns the record."""
    dag_id, task_id, ds = context["dag"].dag_id, context["task"].task_id, context["ds"]
    record = ledger.job_record(dag_id=dag_id, run_id=context["run_id"], ds=ds, task_id=task_id, resource=resource,
                               usages=usages, prices=prices or price_table(), service=service,
                               model_version=model_version, predictions=predictions)
    record["execution"] = execution_of(context)
    key = ledger.records_key(ds, dag_id, task_id, resource)
    lake.write_json(_uri(key), record)
    replaced = _replace_earlier(_uri(ledger.task_prefix(ds, dag_id, task_id)), record["execution"], keep=_uri(key))
    items = ", ".join(f"{line['quantity']:.4g} {line['unit']} of {line['item']}" for line in record["lines"]) or "no usage"
    log.info("COST %s %s: %.4f USD (%s); ledger record %s%s", record["service"], resource, record["usd"], items,
             _uri(key), f"; replaced {replaced} record(s) of an earlier execution of the run" if replaced else "")
    return record


def _replace_earlier(prefix_uri: str, execution: str, keep: str) -> int:
    stale = []
    for uri in lake.list_keys(prefix_uri):
        if uri != keep and lake.read_json(uri).get("execution") != execution:
            stale.append(uri)
    return lake.delete_objects(stale)


def read_records(prefix_uri: str) -> list[dict[str, Any]]:
    """The ledger records under a lake prefix, each checked (``ledger.check_record``)."""
    return [ledger.check_record(lake.read_json(uri), uri) for uri in lake.list_keys(prefix_uri) if uri.endswith(".json")]


def run_records(ds: str, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The records a DAG run wrote (those of other runs of the date, e.g. a manual run, are left out)."""
    prefix = f"{ledger.RECORDS_PREFIX}date={ds}/{dag_id}/"
    return [r for r in read_records(_uri(prefix)) if r["run_id"] == run_id]


def run_summary(records: Sequence[Mapping[str, Any]]) -> str:
    """One line for a task log or a run's note: the total, by service, and how many jobs."""
    total = ledger.totals(records)
    if not total["records"]:
        return "Cost: no job of this run wrote a ledger record"
    services = ", ".join(f"{service} {usd:.4f}" for service, usd in total["by_service"].items())
    return f"Cost: {total['usd']:.4f} USD for {total['records']} job(s) ({services}), priced from the ledger's records"


def log_run_total(ds: str, dag_id: str, run_id: str) -> dict[str, Any]:
    """The run's total from its ledger records, logged line by line and returned (its XCom): the run_cost task."""
    records = run_records(ds, dag_id, run_id)
    for record in sorted(records, key=lambda r: (r["task_id"], r["resource"])):
        log.info("COST %s %s %s: %.4f USD", record["task_id"], record["service"], record["resource"], record["usd"])
    summary = run_summary(records)
    log.info("%s (run %s of %s, %s)", summary, run_id, dag_id, ds)
    total = ledger.totals(records)
    return {"usd": round(total["usd"], 6), "jobs": total["records"], "summary": summary,
            "by_service": {k: round(v, 6) for k, v in total["by_service"].items()},
            "by_task": {task: round(sum(r["usd"] for r in records if r["task_id"] == task), 6)
                        for task in sorted({r["task_id"] for r in records})}}


def spot_saving(lines: Sequence[Mapping[str, Any]]) -> float | None:
    """1 - billed/trained instance-seconds over training lines (``detail`` of training_job_usage), or None without any."""
    billed = trained = 0.0
    for line in lines:
        detail = line.get("detail") or {}
        if "training_seconds" in detail:
            count = detail.get("instance_count", 1)
            billed += detail.get("billable_seconds", 0.0) * count
            trained += detail.get("training_seconds", 0.0) * count
    return round(1 - billed / trained, 6) if trained else None


def training_cost(records: Sequence[Mapping[str, Any]], *, training_task: str, tuning_task: str) -> dict[str, Any]:
    """What a model cost to make, for its card: the final training job and the tuning job of its run, each with
    its USD and its measured spot saving (1 - billable/training seconds)."""
    def part(task_id: str) -> dict[str, Any] | None:
        mine = [r for r in records if r["task_id"] == task_id]
        if not mine:
            return None
        lines = [line for r in mine for line in r["lines"]]
        return {"usd": round(sum(r["usd"] for r in mine), 6), "jobs": [r["resource"] for r in mine],
                "training_jobs": len({(line.get("detail") or {}).get("training_job") for line in lines}),
                "billable_seconds": sum((line.get("detail") or {}).get("billable_seconds", 0.0) for line in lines),
                "training_seconds": sum((line.get("detail") or {}).get("training_seconds", 0.0) for line in lines),
                "spot_saving": spot_saving(lines)}

    training, tuning = part(training_task), part(tuning_task)
    return {"training": training, "tuning": tuning,
            "usd": round(sum(p["usd"] for p in (training, tuning) if p), 6)}
