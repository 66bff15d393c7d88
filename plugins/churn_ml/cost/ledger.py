"""The cost ledger: usage priced from the table, one record per job in the lake (``_costs/``), and totals.

A record is the JSON of one job (a training job, a tuning job with its trials, a transform, a Spark run,
a day of an endpoint or of the streaming job): who ran it (dag_id, run_id, ds, task_id), the service and
resource, its priced usage lines and their sum. Its key is derived from (ds, dag_id, task_id, resource)
only (``records_key``), and its content from the job's answers and the price table only (no clock), so:

- a retry that re-attached to the same job writes the same object under the same key: no duplicate;
- a rerun of a date writes that task's records again under the same keys; a writer that replaces the
  task's prefix (``task_prefix``: write aside, then swap, as churn_ml.lake.publish does) also removes the
  records of jobs the rerun no longer has.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from churn_ml.cost.prices import PriceTable
from churn_ml.cost.usage import Usage

COSTS_PREFIX = "_costs/"
RECORDS_PREFIX = f"{COSTS_PREFIX}records/"
RECORD_SCHEMA = 1
_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")  # Airflow's dag and task ids (task groups add dots)


@dataclass(frozen=True)
class LedgerRecord:
    """One usage line priced: ``quantity`` x ``unit_usd`` = ``usd``, with where the price comes from."""

    service: str
    resource: str
    item: str
    quantity: float
    unit: str
    unit_usd: float
    usd: float
    day: str
    price_source: str
    price_as_of: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "resource": self.resource, "item": self.item, "quantity": self.quantity,
                "unit": self.unit, "unit_usd": self.unit_usd, "usd": self.usd, "day": self.day,
                "price_source": self.price_source, "price_as_of": self.price_as_of, "detail": dict(self.detail)}


def price(usage: Usage, prices: PriceTable) -> LedgerRecord:
    """``usage`` priced by ``prices``; UnknownPriceItem (a KeyError) names an item the table lacks and the file,
    ValueError a unit that differs from the table's (a quantity is never converted silently)."""
    item = prices.item(usage.item)
    if item.unit != usage.unit:
        raise ValueError(f"{usage.item}: the usage of {usage.resource} is in {usage.unit!r} but {prices.path} prices "
                         f"it per {item.unit!r}; fix the item's unit there or the usage function")
    return LedgerRecord(service=usage.service, resource=usage.resource, item=usage.item, quantity=usage.quantity,
                        unit=usage.unit, unit_usd=item.usd, usd=usage.quantity * item.usd, day=usage.day,
                        price_source=item.source, price_as_of=item.as_of, detail=dict(usage.detail))


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"{what} must be a non-empty Airflow id (letters, digits, '_', '.', '-'), got {value!r}")
    return value


def _check_ds(ds: str) -> str:
    try:
        dt.date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise ValueError(f"ds must be the run's logical date as YYYY-MM-DD, got {ds!r}") from None
    return ds


def task_prefix(ds: str, dag_id: str, task_id: str) -> str:
    """The lake prefix of one task's records for a date: what a rerun of the date replaces."""
    return f"{RECORDS_PREFIX}date={_check_ds(ds)}/{_check_id(dag_id, 'dag_id')}/{_check_id(task_id, 'task_id')}/"


def records_key(ds: str, dag_id: str, task_id: str, resource: str) -> str:
    """The key (under the lake bucket) of one job's record: ``_costs/records/date=<ds>/<dag_id>/<task_id>/<resource>.json``.

    ``resource`` (a job name, an endpoint, an ``s3://`` prefix) is percent-encoded into one path segment, so
    different resources never share a key and the same resource always gets the same one."""
    if not isinstance(resource, str) or not resource:
        raise ValueError(f"resource must be the job's (or endpoint's, stream's, prefix's) name, got {resource!r}")
    return f"{task_prefix(ds, dag_id, task_id)}{quote(resource, safe='')}.json"


def job_record(*, dag_id: str, run_id: str, ds: str, task_id: str, resource: str, usages: Sequence[Usage],
               prices: PriceTable, service: str | None = None, model_version: str | None = None,
               predictions: int | None = None) -> dict[str, Any]:
    """The ledger record of one job: its usage lines priced and their sum. ``model_version`` ties training,
    tuning and deployment records to a registry version; ``predictions`` is how many predictions the job made
    (a transform, a day of the endpoint or stream), for the cost per 1,000 predictions."""
    services = sorted({u.service for u in usages})
    if service is None:
        if len(services) != 1:
            raise ValueError(f"record of {resource}: pass service= (usages are of {services or 'no service'})")
        service = services[0]
    elif services and services != [service]:
        raise ValueError(f"record of {resource}: service={service!r} but its usages are of {', '.join(services)}")
    if not run_id:
        raise ValueError(f"record of {resource}: expected the Airflow run_id")
    if predictions is not None and (isinstance(predictions, bool) or not isinstance(predictions, int) or predictions < 0):
        raise ValueError(f"record of {resource}: predictions must be a count >= 0, got {predictions!r}")
    lines = [price(usage, prices).to_dict() for usage in usages]
    return {"schema": RECORD_SCHEMA, "dag_id": _check_id(dag_id, "dag_id"), "run_id": run_id, "ds": _check_ds(ds),
            "task_id": _check_id(task_id, "task_id"), "service": service, "resource": resource,
            "model_version": model_version, "predictions": predictions, "region": prices.region,
            "lines": lines, "usd": sum(line["usd"] for line in lines)}


def check_record(record: Any, where: str) -> dict[str, Any]:
    """A record read back (from the lake or a folder), checked; ValueError naming ``where`` and the field."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected a ledger record (a JSON object), got {type(record).__name__}")
    missing = [k for k in ("dag_id", "run_id", "ds", "task_id", "service", "resource", "lines", "usd") if k not in record]
    if missing:
        raise ValueError(f"{where}: not a ledger record, missing {', '.join(missing)} (written by churn_ml.cost.ledger.job_record)")
    if record.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"{where}: ledger record schema {record.get('schema')!r}, this code reads schema {RECORD_SCHEMA}")
    for n, line in enumerate(record["lines"]):
        absent = [k for k in ("item", "quantity", "unit", "usd", "day") if k not in line]
        if absent:
            raise ValueError(f"{where}: line {n} misses {', '.join(absent)}")
    return dict(record)


def totals(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """USD of the records: in total and by DAG, by run (``<dag_id>/<run_id>``), by model version (records
    that name one), by UTC day of the usage, by service and by item; with the predictions the records count."""
    result: dict[str, Any] = {"usd": 0.0, "records": 0, "predictions": 0, "by_dag": {}, "by_run": {},
                              "by_model_version": {}, "by_day": {}, "by_service": {}, "by_item": {}}

    def add(group: str, key: str, usd: float) -> None:
        result[group][key] = result[group].get(key, 0.0) + usd

    for record in records:
        result["records"] += 1
        result["predictions"] += record.get("predictions") or 0
        for line in record["lines"]:
            usd = float(line["usd"])
            result["usd"] += usd
            add("by_dag", record["dag_id"], usd)
            add("by_run", f"{record['dag_id']}/{record['run_id']}", usd)
            if record.get("model_version"):
                add("by_model_version", str(record["model_version"]), usd)
            add("by_day", line["day"], usd)
            add("by_service", record["service"], usd)
            add("by_item", line["item"], usd)
    for group in ("by_dag", "by_run", "by_model_version", "by_day", "by_service", "by_item"):
        result[group] = dict(sorted(result[group].items()))
    return result


def cost_per_1000_predictions(usd: float, predictions: int) -> float:
    """USD per 1,000 predictions; ValueError without predictions (a cost per nothing is not a figure)."""
    if isinstance(predictions, bool) or not isinstance(predictions, int) or predictions <= 0:
        raise ValueError(f"expected a prediction count > 0 to divide {usd} USD by, got {predictions!r}")
    return usd / predictions * 1000
