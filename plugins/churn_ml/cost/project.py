"""A month of this architecture priced item by item, beside the reference architecture's $1,610.98/month.

Two sources of usage:

- ``project(Scenario(...), prices)``: a scenario (data volume, batch and streaming hours, DPUs, instance types
  and counts, retraining cadence, spot saving, ...) turned into the month's billed quantities of this
  architecture's services: the Spark preprocessing on Glue or EMR Serverless, the Glue streaming job, tuning
  and training on managed spot, the endpoint, the batch transform, Kinesis, the lake's S3 storage, MWAA;
- ``project_from_ledger(records, prices, ...)``: the usage the ledger measured in real runs, per DAG run or
  per day, scaled to a month and linearly to a target data volume (items that follow the volume: training,
  transform, Spark batch, Kinesis writes, S3; not the endpoint, the streaming job, shards or MWAA, which run
  for hours whatever the volume).

Each line is its quantity (rounded to 4 decimals) times its unit price, rounded to the cent; the total is the
sum of the lines, so the items add up to it exactly. Every figure a projection assumes is one of its
``assumptions`` rows. The same inputs give the same figures: nothing reads a clock or a random source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from churn_ml.cost.prices import PriceTable

# The figure the reference architecture publishes for its scenario (issue 27; DESIGN.md "Lineage, catalog and cost").
REFERENCE_USD_PER_MONTH = Decimal("1610.98")
REFERENCE = ("AWS reference architecture \"ML pipeline with Airflow / Glue / SageMaker\": 100 GB a day, 2 h batch + "
             "12 h near-real-time a day on 5 + 5 Glue DPUs, an XGBoost endpoint")
CENT = Decimal("0.01")
QUANTUM = Decimal("0.0001")
SPARK_BACKENDS = ("glue", "emr-serverless")
KINESIS_MODES = ("provisioned", "on-demand")
DPU_VCPUS, DPU_MEMORY_GB = 4, 16            # one Glue DPU: 4 vCPUs and 16 GB of memory
SHARD_MB_PER_SECOND, SHARD_RECORDS_PER_SECOND = 1.0, 1000  # what one provisioned shard takes in
KINESIS_PUT_UNIT_KB = 25
# Items whose quantity follows the data volume (scaled linearly by --from-ledger); the others run for hours.
VOLUME_SCALED = ("sagemaker.training.", "sagemaker.transform.", "emr_serverless.", "glue.etl.", "glue.flex.",
                 "kinesis.put_payload_units", "kinesis.on_demand.data_", "s3.")


@dataclass(frozen=True)
class Scenario:
    """What a month of the pipelines does. The defaults are the reference architecture's scenario (and, where it
    says nothing, this project's deployment: the template's instance types, the DAGs' budgets)."""

    gb_per_day: float = 100.0
    batch_hours: float = 2.0
    streaming_hours: float = 12.0
    glue_dpus: float = 5.0
    streaming_dpus: float = 5.0
    spark_backend: str = "glue"
    training_instance: str = "ml.m5.xlarge"
    training_instances: int = 1
    training_hours: float = 1.0
    tuning_trials: int = 12
    trial_hours: float = 0.25
    spot_saving: float = 0.6
    retrain_every_days: float = 7.0
    endpoint_instance: str = "ml.m5.xlarge"
    endpoint_instances: int = 1
    transform_instance: str = "ml.m5.large"
    transform_instances: int = 1
    transform_hours: float = 0.5
    kinesis_mode: str = "provisioned"
    stream_gb_per_day: float | None = None
    record_kb: float = 1.0
    retention_days: float = 30.0
    mwaa_class: str = "mw1.small"
    hours_per_month: float = 730.0

    def checked(self) -> Scenario:
        """The scenario with its backend/mode names normalised; ValueError naming a figure out of range."""
        backend = self.spark_backend.replace("_", "-").lower()
        if backend not in SPARK_BACKENDS:
            raise ValueError(f"spark_backend {self.spark_backend!r}: expected one of {', '.join(SPARK_BACKENDS)}")
        mode = self.kinesis_mode.replace("_", "-").lower()
        if mode not in KINESIS_MODES:
            raise ValueError(f"kinesis_mode {self.kinesis_mode!r}: expected one of {', '.join(KINESIS_MODES)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and (value < 0 or math.isnan(value)):
                raise ValueError(f"{f.name} must be >= 0, got {value}")
        for name in ("batch_hours", "streaming_hours", "transform_hours"):
            if getattr(self, name) > 24:
                raise ValueError(f"{name} is hours a day: at most 24, got {getattr(self, name)}")
        if not 0 <= self.spot_saving < 1:
            raise ValueError(f"spot_saving is the share of training time not billed: 0 <= spot_saving < 1, got {self.spot_saving}")
        for name in ("retrain_every_days", "hours_per_month", "record_kb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.streaming_dpus and not self.streaming_hours:
            raise ValueError("streaming_dpus without streaming_hours: set --streaming-hours, or --streaming-dpus 0")
        return Scenario(**{**asdict(self), "spark_backend": backend, "kinesis_mode": mode})


# Why each scenario figure is what it is by default: one assumption row each.
WHY = {
    "gb_per_day": "the reference scenario's daily data volume",
    "batch_hours": "the reference scenario's batch processing time a day (the Spark preprocessing)",
    "streaming_hours": "the reference scenario's near-real-time processing a day (the Glue streaming job runs this long)",
    "glue_dpus": "the reference scenario's DPUs of the batch job (EMR Serverless: the same vCPUs and memory, 1 DPU = 4 vCPU + 16 GB)",
    "streaming_dpus": "the reference scenario's DPUs of the streaming job",
    "spark_backend": "the reference scenario runs the batch Spark on Glue; this project can run it on EMR Serverless (CHURN_SPARK_BACKEND)",
    "training_instance": "the final training and every tuning trial (CHURN_TRAINING_INSTANCE_TYPE)",
    "training_instances": "ResourceConfig.InstanceCount of the training requests",
    "training_hours": "assumed on-demand-equivalent hours of the final training at this volume; the ledger measures it",
    "tuning_trials": "churn_training's tuning budget (param tuning.max_jobs)",
    "trial_hours": "assumed hours of one tuning trial at this volume; the ledger measures it",
    "spot_saving": "assumed share of managed spot training time not billed (1 - billable/training); the ledger measures it per job",
    "retrain_every_days": "churn_training's weekly schedule",
    "endpoint_instance": "the reference scenario's XGBoost endpoint",
    "endpoint_instances": "one instance, running all month",
    "transform_instance": "the daily batch transform (CHURN_TRANSFORM_INSTANCE_TYPE)",
    "transform_instances": "TransformResources.InstanceCount of the transform request",
    "transform_hours": "assumed hours a day of the batch transform of the day's features",
    "kinesis_mode": "provisioned shards sized from the throughput (on-demand: the template's EventsStream mode, priced per stream-hour and GB)",
    "stream_gb_per_day": "data written to the stream a day (none given: the whole daily volume passes through Kinesis)",
    "record_kb": "assumed size of one event record written to Kinesis",
    "retention_days": "days of raw data the lake keeps in S3 Standard (features, predictions and captures not counted: small next to raw)",
    "mwaa_class": "the template's MwaaEnvironmentClass (scheduler, web server and its minimum worker; extra workers not counted)",
    "hours_per_month": "the AWS Pricing Calculator's month",
}


@dataclass(frozen=True)
class Line:
    """One priced item of a month: ``quantity`` (4 decimals) x ``unit_usd`` = ``usd`` (to the cent)."""

    item: str
    what: str
    quantity: Decimal
    unit: str
    unit_usd: Decimal
    usd: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "what": self.what, "quantity": float(self.quantity), "unit": self.unit,
                "unit_usd": float(self.unit_usd), "usd": float(self.usd)}


@dataclass(frozen=True)
class Assumption:
    name: str
    value: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "value": self.value, "why": self.why}


@dataclass(frozen=True)
class Projection:
    title: str
    region: str
    lines: tuple[Line, ...]
    assumptions: tuple[Assumption, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.usd for line in self.lines), Decimal("0.00"))

    @property
    def difference(self) -> Decimal:
        return self.total - REFERENCE_USD_PER_MONTH

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "region": self.region, "items": [line.to_dict() for line in self.lines],
                "total_usd": float(self.total), "reference": REFERENCE, "reference_usd": float(REFERENCE_USD_PER_MONTH),
                "difference_usd": float(self.difference), "assumptions": [a.to_dict() for a in self.assumptions]}


def _line(prices: PriceTable, item: str, what: str, quantity: float) -> Line:
    entry = prices.item(item)
    amount = Decimal(repr(float(quantity))).quantize(QUANTUM, ROUND_HALF_UP)
    unit_usd = Decimal(repr(entry.usd))
    return Line(item, what, amount, entry.unit, unit_usd, (amount * unit_usd).quantize(CENT, ROUND_HALF_UP))


def _fmt(value: float) -> str:
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def project(scenario: Scenario, prices: PriceTable) -> Projection:
    """The month of ``scenario`` priced by ``prices``, item by item, with every assumption as a row."""
    s = scenario.checked()
    days = s.hours_per_month / 24
    lines: list[Line] = []
    derived: list[Assumption] = [Assumption("days per month", _fmt(days), "hours_per_month / 24")]

    batch_dpu_hours = s.batch_hours * s.glue_dpus * days
    if s.spark_backend == "glue":
        lines.append(_line(prices, "glue.etl.dpu_hour", f"batch Spark on Glue: {_fmt(s.glue_dpus)} DPU x {_fmt(s.batch_hours)} h a day",
                           batch_dpu_hours))
    else:
        lines.append(_line(prices, "emr_serverless.vcpu_hour",
                           f"batch Spark on EMR Serverless: {_fmt(s.glue_dpus * DPU_VCPUS)} vCPU x {_fmt(s.batch_hours)} h a day",
                           batch_dpu_hours * DPU_VCPUS))
        lines.append(_line(prices, "emr_serverless.memory_gb_hour",
                           f"batch Spark on EMR Serverless: {_fmt(s.glue_dpus * DPU_MEMORY_GB)} GB x {_fmt(s.batch_hours)} h a day",
                           batch_dpu_hours * DPU_MEMORY_GB))
        lines.append(_line(prices, "emr_serverless.storage_gb_hour",
                           "batch Spark on EMR Serverless: storage beyond the free 20 GB per worker", 0.0))
        derived.append(Assumption("EMR Serverless storage beyond 20 GB per worker", "0 GB",
                                  "the preprocessing's shuffle fits the free 20 GB of each worker"))
    if s.streaming_hours and s.streaming_dpus:
        lines.append(_line(prices, "glue.streaming.dpu_hour",
                           f"Glue streaming job: {_fmt(s.streaming_dpus)} DPU x {_fmt(s.streaming_hours)} h a day",
                           s.streaming_hours * s.streaming_dpus * days))

    runs = days / s.retrain_every_days
    billed_share = 1 - s.spot_saving
    derived.append(Assumption("training runs per month", _fmt(runs), "days per month / retrain_every_days"))
    training = f"sagemaker.training.{s.training_instance}"
    lines.append(_line(prices, training, f"tuning on managed spot: {s.tuning_trials} trials x {_fmt(s.trial_hours)} h x "
                                         f"{s.training_instances} instance(s), {_fmt(billed_share * 100)} % billed, {_fmt(runs)} runs",
                       s.tuning_trials * s.trial_hours * s.training_instances * billed_share * runs))
    lines.append(_line(prices, training, f"final training on managed spot: {_fmt(s.training_hours)} h x {s.training_instances} "
                                         f"instance(s), {_fmt(billed_share * 100)} % billed, {_fmt(runs)} runs",
                       s.training_hours * s.training_instances * billed_share * runs))
    lines.append(_line(prices, f"sagemaker.hosting.{s.endpoint_instance}",
                       f"real-time endpoint: {s.endpoint_instances} instance(s) all month", s.endpoint_instances * s.hours_per_month))
    lines.append(_line(prices, f"sagemaker.transform.{s.transform_instance}",
                       f"daily batch transform: {s.transform_instances} instance(s) x {_fmt(s.transform_hours)} h",
                       s.transform_instances * s.transform_hours * days))

    stream_gb = s.gb_per_day if s.stream_gb_per_day is None else s.stream_gb_per_day
    records_per_day = stream_gb * 2**20 / s.record_kb
    derived.append(Assumption("records written to Kinesis a day", _fmt(records_per_day), "stream GB a day x 2^20 / record_kb"))
    if s.kinesis_mode == "provisioned":
        seconds = (s.streaming_hours or 24) * 3600
        shards = max(1, math.ceil(stream_gb * 1024 / seconds / SHARD_MB_PER_SECOND - 1e-9),
                     math.ceil(records_per_day / seconds / SHARD_RECORDS_PER_SECOND - 1e-9))
        derived.append(Assumption("open shards", str(shards),
                                  f"the stream's daily data written within the streaming hours: {SHARD_MB_PER_SECOND:g} MB/s "
                                  f"and {SHARD_RECORDS_PER_SECOND} records/s a shard; the stream stays open all month"))
        lines.append(_line(prices, "kinesis.shard_hour", f"Kinesis: {shards} shard(s) all month", shards * s.hours_per_month))
        units = math.ceil(s.record_kb / KINESIS_PUT_UNIT_KB)
        lines.append(_line(prices, "kinesis.put_payload_units",
                           f"Kinesis writes: {units} PUT payload unit(s) a record", records_per_day * units * days / 1e6))
    else:
        billed_gb = records_per_day * math.ceil(s.record_kb) / 2**20
        lines.append(_line(prices, "kinesis.on_demand.stream_hour", "Kinesis on-demand stream, all month", s.hours_per_month))
        lines.append(_line(prices, "kinesis.on_demand.data_in_gb", "Kinesis on-demand data written (records rounded up to 1 KB)",
                           billed_gb * days))
        lines.append(_line(prices, "kinesis.on_demand.data_out_gb", "Kinesis on-demand data read by the streaming job once",
                           billed_gb * days))
        derived.append(Assumption("Kinesis reads", "1 consumer", "the streaming job reads each record once"))
    lines.append(_line(prices, "s3.standard.gb_month", f"lake storage: {_fmt(s.retention_days)} days of {_fmt(s.gb_per_day)} GB",
                       s.gb_per_day * s.retention_days))
    lines.append(_line(prices, f"mwaa.environment.{s.mwaa_class}", f"MWAA {s.mwaa_class} environment all month", s.hours_per_month))
    derived.append(Assumption("endpoint data capture", "no charge of its own",
                              "sagemaker.data_capture is $0: captured objects are S3 storage, billed with the lake's"))
    derived.append(Assumption("prices", f"{prices.region} price table", "on-demand list prices; taxes, data transfer, "
                              "CloudWatch, KMS and request charges not counted"))

    rows = [Assumption(f.name, _value(getattr(s, f.name)), WHY[f.name]) for f in fields(s)]
    return Projection(f"Monthly cost of this architecture ({prices.region} prices)", prices.region, tuple(lines),
                      tuple(rows + derived))


def _value(value: Any) -> str:
    if value is None:
        return "-"
    return _fmt(value) if isinstance(value, float) else str(value)


def scales_with_volume(item: str) -> bool:
    return item.startswith(VOLUME_SCALED)


def project_from_ledger(records: Iterable[Mapping[str, Any]], prices: PriceTable, *, measured_gb_per_day: float,
                        target_gb_per_day: float, retrain_every_days: float = 7.0, hours_per_month: float = 730.0,
                        training_dag: str = "churn_training") -> Projection:
    """The ledger's measured usage as a month at ``target_gb_per_day``.

    Per DAG and item: the training DAG's usage per run x runs a month (every ``retrain_every_days``), every
    other DAG's usage per day (distinct ``ds``) x days a month; items that follow the data volume are scaled
    by target / measured volume (``VOLUME_SCALED``). Priced with ``prices`` (today's table, not the one the
    records were priced with)."""
    records = list(records)
    if not records:
        raise ValueError("no ledger records to project from: run the pipelines first, or point --from-ledger at the lake's _costs/records/")
    if measured_gb_per_day <= 0 or target_gb_per_day <= 0:
        raise ValueError(f"measured and target GB a day must be > 0, got {measured_gb_per_day} and {target_gb_per_day}")
    if retrain_every_days <= 0 or hours_per_month <= 0:
        raise ValueError("retrain_every_days and hours_per_month must be > 0")
    factor = target_gb_per_day / measured_gb_per_day
    days = hours_per_month / 24
    runs_of: dict[str, set[str]] = {}
    days_of: dict[str, set[str]] = {}
    quantity: dict[tuple[str, str], float] = {}
    for record in records:
        dag = record["dag_id"]
        runs_of.setdefault(dag, set()).add(record["run_id"])
        days_of.setdefault(dag, set()).add(record["ds"])
        for line in record["lines"]:
            entry = prices.item(line["item"])
            if entry.unit != line["unit"]:
                raise ValueError(f"ledger line {line['item']} of {record['resource']} is in {line['unit']!r}, the price table "
                                 f"{prices.path} prices it per {entry.unit!r}")
            quantity[(dag, line["item"])] = quantity.get((dag, line["item"]), 0.0) + float(line["quantity"])
    lines = []
    for (dag, item), measured in sorted(quantity.items()):
        if dag == training_dag:
            per, count, per_month = "run", len(runs_of[dag]), days / retrain_every_days
        else:
            per, count, per_month = "day", len(days_of[dag]), days
        scale = factor if scales_with_volume(item) else 1.0
        what = (f"{dag}: {_fmt(measured / count)} {prices.item(item).unit} a {per} measured ({count} {per}s) x {_fmt(per_month)} "
                + (f"x {_fmt(scale)} (volume)" if scales_with_volume(item) else "(not scaled: runs for hours whatever the volume)"))
        lines.append(_line(prices, item, what, measured / count * per_month * scale))
    assumptions = (
        Assumption("measured_gb_per_day", _fmt(measured_gb_per_day), "the data volume a day the ledger's runs processed"),
        Assumption("target_gb_per_day", _fmt(target_gb_per_day), "the volume to project to"),
        Assumption("volume factor", _fmt(factor), "target / measured, applied to " + ", ".join(f"{p}*" for p in VOLUME_SCALED)),
        Assumption("not scaled", "endpoint hosting, Glue streaming, Kinesis shards and streams, MWAA",
                   "they bill hours of running capacity, not volume"),
        Assumption("retrain_every_days", _fmt(retrain_every_days), f"runs a month of {training_dag}: its usage per run x "
                                                                    "days a month / this"),
        Assumption("hours_per_month", _fmt(hours_per_month), "the AWS Pricing Calculator's month; other DAGs: usage per day x hours / 24"),
        Assumption("records", str(len(records)), "ledger records read: " + ", ".join(
            f"{dag} {len(days_of[dag])} day(s) / {len(runs_of[dag])} run(s)" for dag in sorted(days_of))),
        Assumption("prices", f"{prices.region} price table", "today's table, not the figures the records were priced with"),
    )
    return Projection(f"Monthly cost from the ledger at {_fmt(target_gb_per_day)} GB a day ({prices.region} prices)",
                      prices.region, tuple(lines), assumptions)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def render(projection: Projection) -> str:
    """The projection as Markdown tables (a terminal reads them as they are; docs/cost.md includes them)."""
    out = [projection.title, "", "| item | what | quantity | unit | USD per unit | USD a month |", "|---|---|---:|---|---:|---:|"]
    for line in projection.lines:
        out.append(f"| {line.item} | {_cell(line.what)} | {line.quantity:,.4f} | {line.unit} | {line.unit_usd} | {line.usd:,.2f} |")
    out.append(f"| **total** | | | | | **{projection.total:,.2f}** |")
    share = projection.difference / REFERENCE_USD_PER_MONTH * 100
    out += ["", "| comparison | USD a month |", "|---|---:|",
            f"| this architecture | {projection.total:,.2f} |",
            f"| {_cell(REFERENCE)} | {REFERENCE_USD_PER_MONTH:,.2f} |",
            f"| difference | {projection.difference:+,.2f} ({share:+.1f} %) |",
            "", "Assumptions", "", "| assumption | value | why |", "|---|---|---|"]
    out += [f"| {_cell(a.name)} | {_cell(a.value)} | {_cell(a.why)} |" for a in projection.assumptions]
    return "\n".join(out)
