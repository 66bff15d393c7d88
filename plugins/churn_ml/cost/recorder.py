"""The ledger written from tasks: one record per job in the lake, and a DAG run's total.

``write_record`` prices a job's usage (``churn_ml.cost.usage``, from the service's own answer), writes the
record to ``_costs/records/date=<ds>/<dag_id>/<task_id>/<resource>.json`` (``ledger.records_key``: one S3
PUT, which readers see whole or not at all) and then removes the records under the task's prefix that an
earlier execution of the run wrote. An execution is the run and its clear number (``execution_of``):

- a retry that re-attached to its job writes the same key with the same content: no record added;
- a retry that had to start a new attempt (``-rN``) after a failed job keeps the failed job's record
  beside the new one: both were billed to this execution of the run;
- a rerun of the date (a clear, a backfill with ``--reprocess-behavior``: the same run, cleared) replaces the
  task's records: the new ones are written first, then the earlier execution's are deleted;
- another run of the same date (a manual run, ``retrain__<ds>`` beside the scheduled one) keeps its own records.

``run_records`` reads a run's records back; ``run_summary`` is the total a task log and the run's note show.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from churn_ml import lake
from churn_ml.cost import ledger
from churn_ml.cost.prices import PriceTable, load_prices
from churn_ml.cost.usage import (
    ENDPOINT_EVENTS,
    EndpointEvent,
    Usage,
    Variant,
    creation_event,
    endpoint_usage,
    glue_streaming_usage,
    measured_spot_saving,
    utc,
)
from churn_ml.errors import CannotSucceedOnRetry
from churn_ml.settings import settings

log = logging.getLogger(__name__)


class UnpricedJobs(CannotSucceedOnRetry, RuntimeError):
    """Jobs of the run whose usage could not be read or priced: their records say why."""

    def __init__(self, jobs: Sequence[str]) -> None:
        super().__init__(
            f"{len(jobs)} job(s) of this run have no price in the ledger: {'; '.join(jobs)}. Fix the cause (an item "
            "missing from plugins/churn_ml/cost/prices/<region>.json, an answer without its billing fields), then "
            "clear the job's task: it re-attaches to the job and prices it")


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
    return store_record(context, price_record(context, resource=resource, usages=usages, service=service,
                                              model_version=model_version, predictions=predictions, prices=prices))


def price_record(context: Mapping[str, Any], *, resource: str, usages: Sequence[Usage], service: str | None = None,
                 model_version: str | None = None, predictions: int | None = None,
                 prices: PriceTable | None = None) -> dict[str, Any]:
    """The record of one job of this task: ``usages`` priced (``ledger.job_record``), with the run's execution."""
    record = ledger.job_record(dag_id=context["dag"].dag_id, run_id=context["run_id"], ds=context["ds"],
                               task_id=context["task"].task_id, resource=resource, usages=usages,
                               prices=prices or price_table(), service=service, model_version=model_version,
                               predictions=predictions)
    record["execution"] = execution_of(context)
    return record


def unpriced_record(context: Mapping[str, Any], *, resource: str, service: str, reason: str,
                    model_version: str | None = None) -> dict[str, Any]:
    """The record of a job whose usage could not be read or priced: no lines, 0 USD, and ``unpriced`` saying why;
    the run's ``run_cost`` fails on it (``unpriced_jobs``) until a clear of the task prices the job."""
    record = ledger.job_record(dag_id=context["dag"].dag_id, run_id=context["run_id"], ds=context["ds"],
                               task_id=context["task"].task_id, resource=resource, usages=[], prices=price_table(),
                               service=service, model_version=model_version)
    record["execution"], record["unpriced"] = execution_of(context), reason
    return record


def store_record(context: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Write a record of this task (``records_key``), then delete the task's records of an earlier execution."""
    dag_id, task_id, ds = record["dag_id"], record["task_id"], record["ds"]
    key = ledger.records_key(ds, dag_id, task_id, record["resource"])
    lake.write_json(_uri(key), record)
    replaced = _replace_earlier(_uri(ledger.task_prefix(ds, dag_id, task_id)), record, keep=_uri(key))
    items = ", ".join(f"{line['quantity']:.4g} {line['unit']} of {line['item']}" for line in record["lines"]) or "no usage"
    if record.get("unpriced"):
        items = f"UNPRICED: {record['unpriced']}"
    log.info("COST %s %s: %.4f USD (%s); ledger record %s%s", record["service"], record["resource"], record["usd"],
             items, _uri(key), f"; replaced {replaced} record(s) of an earlier execution of the run" if replaced else "")
    return record


def _replace_earlier(prefix_uri: str, record: Mapping[str, Any], keep: str) -> int:
    """Delete the task's records of an earlier execution of the same run (another run of the date keeps its own)."""
    stale = []
    for uri in lake.list_keys(prefix_uri):
        if uri == keep:
            continue
        other = lake.read_json(uri)
        if other.get("run_id") == record["run_id"] and other.get("execution") != record["execution"]:
            stale.append(uri)
    return lake.delete_objects(stale)


def read_records(prefix_uri: str) -> list[dict[str, Any]]:
    """The ledger records under a lake prefix, each checked (``ledger.check_record``)."""
    return [ledger.check_record(lake.read_json(uri), uri) for uri in lake.list_keys(prefix_uri) if uri.endswith(".json")]


def run_records(ds: str, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The records a DAG run wrote (those of other runs of the date, e.g. a manual run, are left out)."""
    prefix = f"{ledger.RECORDS_PREFIX}date={ds}/{dag_id}/"
    return [r for r in read_records(_uri(prefix)) if r["run_id"] == run_id]


def records_of_days(ds: str, days: int) -> list[dict[str, Any]]:
    """The records of the ``days`` dates ending with ``ds`` (all DAGs)."""
    first = dt.date.fromisoformat(ds) - dt.timedelta(days=days - 1)
    return [r for n in range(days)
            for r in read_records(_uri(f"{ledger.RECORDS_PREFIX}date={first + dt.timedelta(days=n)}/"))]


def unpriced_jobs(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """"<task> <job>: <why>" of each record written unpriced (``unpriced_record``)."""
    return [f"{r['task_id']} {r['resource']}: {r['unpriced']}" for r in records if r.get("unpriced")]


def run_summary(records: Sequence[Mapping[str, Any]]) -> str:
    """One line for a task log or a run's note: the total, by service, and how many jobs."""
    total = ledger.totals(records)
    if not total["records"]:
        return "Cost: no job of this run wrote a ledger record"
    services = ", ".join(f"{service} {usd:.4f}" for service, usd in total["by_service"].items())
    unpriced = len(unpriced_jobs(records))
    return (f"Cost: {total['usd']:.4f} USD for {total['records']} job(s) ({services}), priced from the ledger's records"
            + (f"; {unpriced} job(s) UNPRICED (see run_cost's log)" if unpriced else ""))


def log_run_total(ds: str, dag_id: str, run_id: str) -> dict[str, Any]:
    """The run's total from its ledger records, logged line by line and returned (its XCom): the run_cost task."""
    records = run_records(ds, dag_id, run_id)
    for record in sorted(records, key=lambda r: (r["task_id"], r["resource"])):
        log.info("COST %s %s %s: %.4f USD", record["task_id"], record["service"], record["resource"], record["usd"])
    summary = run_summary(records)
    log.info("%s (run %s of %s, %s)", summary, run_id, dag_id, ds)
    total = ledger.totals(records)
    unpriced = unpriced_jobs(records)
    for job in unpriced:
        log.error("UNPRICED %s", job)
    return {"usd": round(total["usd"], 6), "jobs": total["records"], "summary": summary, "unpriced": unpriced,
            "by_service": {k: round(v, 6) for k, v in total["by_service"].items()},
            "by_task": {task: round(sum(r["usd"] for r in records if r["task_id"] == task), 6)
                        for task in sorted({r["task_id"] for r in records})}}


def spot_saving(lines: Sequence[Mapping[str, Any]]) -> float | None:
    """``usage.measured_spot_saving`` of a record's training lines (``detail`` of training_job_usage), or None
    without any training time."""
    training = [Usage.from_dict(line) for line in lines if "training_seconds" in (line.get("detail") or {})]
    if not any(u.detail["training_seconds"] for u in training):
        return None
    return round(measured_spot_saving(training), 6)


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


# ------------------------------------------------------------------------------------------- endpoints
# An endpoint is billed per instance-hour of each fleet, which no Describe answer adds up: the deployments
# that change its fleets are recorded as they happen (EndpointDeployOperator), one object per event, named by its
# time, event and config (append-only: the same event again, from a retry, is the same object), and the days are
# priced from that history (``endpoint_day_records``). record_costs adds the deletion (or a re-creation) it finds.
ENDPOINTS_PREFIX = f"{ledger.COSTS_PREFIX}endpoints/"
DAYS_PRICED = 7  # record_costs rewrites this many UTC days up to now: a day is completed even when runs were late


def _event_uri(endpoint: str, event: EndpointEvent) -> str:
    stamp = event.time.strftime("%Y%m%dT%H%M%S.%fZ")
    return _uri(f"{ENDPOINTS_PREFIX}{quote(endpoint, safe='')}/{stamp}-{event.event}-{quote(event.config or '-', safe='')}.json")


def record_endpoint_event(endpoint: str, event: EndpointEvent, *, model_version: str | None = None) -> str:
    """Store one change of the endpoint's fleets (the same event again, e.g. from a retry, overwrites itself)."""
    uri = _event_uri(endpoint, event)
    lake.write_json(uri, {"endpoint": endpoint, "time": event.time.isoformat(), "event": event.event,
                          "config": event.config, "model_version": model_version,
                          "variants": [{"name": v.name, "instance_type": v.instance_type,
                                        "instance_count": v.instance_count} for v in event.variants]})
    log.info("endpoint %s: %s %s at %s recorded for its cost (%s)", endpoint, event.event, event.config or "",
             event.time.isoformat(), uri)
    return uri


def endpoint_history(endpoint: str) -> list[dict[str, Any]]:
    """The recorded events of an endpoint, oldest first, each with its ``EndpointEvent`` under "event_object"."""
    found = []
    for uri in lake.list_keys(_uri(f"{ENDPOINTS_PREFIX}{quote(endpoint, safe='')}/")):
        data = lake.read_json(uri)
        variants = tuple(Variant(v["name"], v["instance_type"], int(v["instance_count"])) for v in data["variants"])
        found.append({**data, "event_object": EndpointEvent(utc(data["time"]), data["event"], data["config"], variants)})
    return sorted(found, key=lambda e: (e["event_object"].time, ENDPOINT_EVENTS.index(e["event"])))


class EndpointHistoryError(CannotSucceedOnRetry, ValueError):
    """The recorded deployments of an endpoint do not add up (an event missing): its days cannot be priced."""


def endpoint_day_records(context: Mapping[str, Any], endpoint: str, now: dt.datetime, *, days: int = DAYS_PRICED,
                         prices: PriceTable | None = None) -> list[dict[str, Any]]:
    """Price the endpoint's last ``days`` UTC days up to ``now`` from its recorded deployments (``day_records``),
    each line naming the model version its fleet served (``detail.model_version``)."""
    history = endpoint_history(endpoint)
    if not history:
        log.info("endpoint %s: no deployment recorded, nothing to price", endpoint)
        return []
    versions = {e["config"]: e.get("model_version") for e in history if e["config"]}
    try:
        usages = endpoint_usage(endpoint, [e["event_object"] for e in history], until=now)
    except ValueError as err:
        raise EndpointHistoryError(
            f"the deployments recorded under {_uri(ENDPOINTS_PREFIX)}{endpoint}/ do not add up ({err}): a deployment "
            "was not recorded. Add the missing event (its time from DescribeEndpoint or CloudTrail), or move the "
            "objects of the endpoint's past fleets aside, and clear record_costs") from err
    return day_records(context, endpoint, usages, now, days=days, prices=prices, service="sagemaker",
                       version_of=lambda u: versions.get(u.detail["endpoint_config"]))


def note_endpoint_state(endpoint: str, live: Mapping[str, Any] | None, config: Mapping[str, Any] | None,
                        now: dt.datetime) -> None:
    """What record_costs finds that no deployment recorded: the endpoint deleted (a deletion at ``now``, the first
    time it is found gone: its fleets are billed up to then), or created again since (its creation)."""
    history = endpoint_history(endpoint)
    if not history:
        return
    last = history[-1]
    if live is None and last["event"] != "delete":
        log.warning("endpoint %s no longer exists: its fleets are billed up to now, when it was found gone", endpoint)
        record_endpoint_event(endpoint, EndpointEvent(now, "delete"))
    elif live is not None and config is not None and last["event"] == "delete":
        record_endpoint_event(endpoint, creation_event(live, config), model_version=None)


def streaming_day_records(context: Mapping[str, Any], job_runs: Sequence[Mapping[str, Any]], now: dt.datetime, *,
                          days: int = DAYS_PRICED, prices: PriceTable | None = None) -> list[dict[str, Any]]:
    """Price the streaming Glue job's last ``days`` UTC days up to ``now`` from its runs (GetJobRuns answers:
    capacity x the hours each ran, a running one up to ``now``) (``day_records``)."""
    start = dt.datetime.combine((now - dt.timedelta(days=days - 1)).date(), dt.time(), dt.UTC)
    usages = []
    for run in job_runs:
        ended = run.get("CompletedOn")
        if run.get("StartedOn") is None or (ended is not None and utc(ended) <= start):
            continue
        usages += glue_streaming_usage(run, window=(start, now), until=now)
    if not usages:
        return []
    return day_records(context, usages[0].resource, usages, now, days=days, prices=prices, service="glue")


def day_records(context: Mapping[str, Any], resource: str, usages: Sequence[Usage], now: dt.datetime, *,
                days: int, prices: PriceTable | None, service: str,
                version_of: Any = None) -> list[dict[str, Any]]:
    """One record per UTC day of the last ``days`` up to ``now`` and resource, for what runs all day (an endpoint,
    the streaming job): ``_costs/records/date=<day>/<dag>/<task>/<resource>.json``, each day's rewritten by later
    runs (a partial day is completed by a later run; ``until`` says up to when a record counts). ``version_of``
    names each line's model version (``detail.model_version``; the record's ``model_version`` lists them)."""
    first = (now - dt.timedelta(days=days - 1)).date().isoformat()
    by_day: dict[str, list[Usage]] = {}
    for line in usages:
        if line.day >= first:
            by_day.setdefault(line.day, []).append(line)
    dag_id, task_id = context["dag"].dag_id, context["task"].task_id
    written = []
    for day, lines in sorted(by_day.items()):
        versions = [None if version_of is None or version_of(u) is None else str(version_of(u)) for u in lines]
        record = ledger.job_record(dag_id=dag_id, run_id=context["run_id"], ds=day, task_id=task_id, resource=resource,
                                   usages=lines, prices=prices or price_table(), service=service,
                                   model_version=",".join(sorted({v for v in versions if v})) or None)
        for line, version in zip(record["lines"], versions, strict=True):
            if version:
                line["detail"]["model_version"] = version
        record["execution"] = execution_of(context)
        record["until"] = min(now, dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)).isoformat()
        lake.write_json(_uri(ledger.records_key(day, dag_id, task_id, resource)), record)
        log.info("COST %s %s on %s (until %s): %.4f USD", service, resource, day, record["until"], record["usd"])
        written.append(record)
    return written


def record_daily_costs(context: Mapping[str, Any], *, days: int = DAYS_PRICED) -> dict[str, Any]:
    """The ``record_costs`` task: the endpoint's and the streaming job's last ``days`` UTC days, up to now, from the
    endpoint's recorded deployments (and DescribeEndpoint: a deletion) and the streaming job's GetJobRuns. Each is
    priced on its own: a failure of one is raised after the other is recorded."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
    from botocore.exceptions import ClientError

    now = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {}
    errors: list[Exception] = []
    try:
        sagemaker = AwsGenericHook(aws_conn_id=settings.aws_conn_id, client_type="sagemaker").conn
        try:
            live = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)
            config = sagemaker.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
        except ClientError as err:
            if "could not find" not in str(err).lower() and "not found" not in str(err).lower():
                raise
            live = config = None
        note_endpoint_state(settings.endpoint_name, live, config, now)
        result["endpoint"] = {r["ds"]: round(r["usd"], 6) for r in endpoint_day_records(context, settings.endpoint_name,
                                                                                        now, days=days)}
    except Exception as err:
        log.exception("the endpoint's days could not be priced")
        errors.append(err)
    try:
        glue = AwsGenericHook(aws_conn_id=settings.aws_conn_id, client_type="glue").conn
        start = now - dt.timedelta(days=days)
        runs = []
        for page in glue.get_paginator("get_job_runs").paginate(JobName=settings.streaming_job_name):
            runs += page.get("JobRuns", [])  # newest first: stop at a page whose runs all started before the window
            if all(utc(run["StartedOn"]) < start for run in page.get("JobRuns", []) if run.get("StartedOn")):
                break
        result["streaming_job"] = {r["ds"]: round(r["usd"], 6) for r in streaming_day_records(context, runs, now, days=days)}
    except Exception as err:
        log.exception("the streaming job's days could not be priced")
        errors.append(err)
    if errors:
        raise errors[0]
    return result
