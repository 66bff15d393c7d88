"""The lake's tables in the Glue Data Catalog: the one place that registers (and drops) their partitions.

infra/cloudformation/churn.yaml declares the database (``CHURN_GLUE_DATABASE``) and one table per dataset of
``dag_support.TABLES``, with its columns, format and the partition key ``dt``; on the local target the control
plane creates the same database and tables from the template (local_aws.template). A table's partitions are
what Athena queries, so the catalog follows the lake:

- ``register_partition(table, day)``: the task that swapped ``<prefix>dt=<day>/`` in calls it afterwards. The
  partition's StorageDescriptor is the table's with the partition's Location. Create or update: a reprocessed
  date keeps its one partition. Nothing is registered before its data exists: a ``_SUCCESS`` marker for the
  tables whose writers put one last (Spark's ``sparkio.replace_partitions``, ``transform_io.publish_predictions``),
  a data object for the others (``UNMARKED``).
- ``register_present(table)``: for the streaming job's predictions, which no task swaps in (micro-batches add
  files to the day's partition as they come), the churn_streaming DAG's check_health registers the days the lake
  has and the catalog lacks, and drops the days whose data expired.
- ``drop_expired(table)``: the lake's lifecycle rules expire ``scoring_input/`` and ``stream_predictions/``; the
  catalog's partitions of days whose data is gone are dropped, so the catalog lists what the lake holds.

Through the Amazon provider's GlueCatalogHook (its boto3 client: the hook's own ``create_partition`` turns every
error into a bare AirflowException, and a second registration must see AlreadyExistsException), with the
project's AWS connection: AWS on the aws target, the control plane's Glue Data Catalog locally. The IAM actions
each task uses are ``dag_support.CATALOG_ACCESS``. What no retry can fix (an unknown table, a malformed date, a
partition without data, a table or database the catalog lacks) fails the task at once (``failing_fast``);
throttling and service errors propagate and are retried.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from churn_ml import lake
from churn_ml.dag_support import TABLES
from churn_ml.errors import CannotSucceedOnRetry, failing_fast
from churn_ml.settings import settings

log = logging.getLogger(__name__)
MARKER = "_SUCCESS"
# Written without a _SUCCESS marker: the monitoring job's dt=<day>/summary.json is the partition's one object,
# and the streaming job's micro-batches add dt=<day>/hour=<HH>/batch_id=<n>/ files as the day goes on.
UNMARKED = frozenset({"stream_predictions", "monitoring_daily"})
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/$")
DELETE_BATCH = 25  # BatchDeletePartition takes at most 25 partitions
BATCH = 100  # BatchCreatePartition and BatchUpdatePartition take at most 100
FEW = 3  # partitions checked one request each; more: one listing of the table's prefix


class CatalogError(CannotSucceedOnRetry, ValueError):
    """A registration no retry can make right; the message says what was expected and what to do."""


def _client():
    from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook

    return GlueCatalogHook(aws_conn_id=settings.aws_conn_id).get_conn()


def _prefix(table: str) -> str:
    if table not in TABLES:
        raise CatalogError(f"{table!r} is not a table of the lake; expected one of {', '.join(sorted(TABLES))} "
                           "(churn_ml.dag_support.TABLES, declared in infra/cloudformation/churn.yaml)")
    return TABLES[table]


def _day(value: str) -> str:
    """``value`` when it is a date YYYY-MM-DD (the ``dt`` partition value every table uses)."""
    if isinstance(value, str) and _DAY.fullmatch(value):
        try:
            dt.date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise CatalogError(f"a partition's dt must be a date YYYY-MM-DD, got {value!r}")


def location(table: str, day: str) -> str:
    """The partition's Location: ``s3://<lake>/<table's prefix>dt=<day>/``."""
    _prefix(table)
    return f"{settings.lake}/{TABLES[table]}dt={_day(day)}/"


def _require_data(table: str, where: str) -> None:
    if table in UNMARKED:
        if not lake.has_data(where):
            raise CatalogError(f"refusing to register {table} partition {where}: it holds no data objects. Register a "
                               "partition only after its data is written (rerun the task that writes it)")
    elif not lake.exists(f"{where}{MARKER}"):
        raise CatalogError(f"refusing to register {table} partition {where}: it has no {MARKER} marker, so it was "
                           "not swapped in completely. Rerun the task that writes it; it registers the partition after")


def _table_storage(glue, table: str) -> dict:
    """The table's StorageDescriptor, checked to be where this deployment's lake keeps the dataset."""
    found = glue.get_table(DatabaseName=settings.glue_database, Name=table)["Table"]["StorageDescriptor"]
    _prefix(table)
    expected = f"{settings.lake}/{TABLES[table]}"
    if found.get("Location", "").rstrip("/") + "/" != expected:
        raise CatalogError(f"table {settings.glue_database}.{table} is at {found.get('Location')!r}, not at {expected}: "
                           "the catalog belongs to a stack of another lake bucket. Set CHURN_LAKE_BUCKET and "
                           "CHURN_GLUE_DATABASE to the same stack's outputs (LakeBucket, LakeDatabase)")
    return found


def _with_data(table: str, days: list[str]) -> None:
    """Refuse (``CatalogError``) any of ``days`` whose partition of ``table`` has no data yet: a request per
    partition for a daily run's few, one listing of the table's prefix for a history run's many."""
    if len(days) <= FEW:
        for day in days:
            _require_data(table, location(table, day))
        return
    root = f"{settings.lake}/{TABLES[table]}"
    keys = lake.list_keys(root)
    have = set()
    for uri in keys:
        folder, _, name = uri[len(root):].partition("/")
        if folder.startswith("dt=") and (name == MARKER if table not in UNMARKED else not lake.is_marker(uri)):
            have.add(folder[len("dt="):])
    missing = [day for day in days if day not in have]
    if missing:
        what = "no data objects" if table in UNMARKED else f"no {MARKER} marker, so it was not swapped in completely"
        raise CatalogError(f"refusing to register {table} partition(s) {', '.join(location(table, d) for d in missing)}: "
                           f"{what}. Register a partition only after its data is written: rerun the task that writes "
                           "it; it registers the partition after")


def _register_table(glue, table: str, days: list[str]) -> list[dict]:
    """Create the partitions of ``days`` the catalog lacks and update the ones it has (a reprocessed date keeps its
    one partition), in batches of BATCH; the data of each checked first."""
    days = sorted(set(days))
    _with_data(table, days)
    storage = _table_storage(glue, table)
    registered = catalog_partitions(table, glue)
    done = []
    for start in range(0, len(days), BATCH):
        chunk = days[start:start + BATCH]
        inputs = {day: {"Values": [day], "StorageDescriptor": {**storage, "Location": location(table, day)}}
                  for day in chunk}
        new = [inputs[d] for d in chunk if d not in registered]
        if new:
            answer = glue.batch_create_partition(DatabaseName=settings.glue_database, TableName=table,
                                                 PartitionInputList=new)
            _raise_errors(table, "create", answer.get("Errors"))
        old = [{"PartitionValueList": [d], "PartitionInput": inputs[d]} for d in chunk if d in registered]
        if old:
            answer = glue.batch_update_partition(DatabaseName=settings.glue_database, TableName=table, Entries=old)
            _raise_errors(table, "update", answer.get("Errors"))
        done += [{"table": table, "dt": d, "location": location(table, d),
                  "action": "updated" if d in registered else "created"} for d in chunk]
    created = sum(1 for d in done if d["action"] == "created")
    if done:
        log.info("catalog: %s.%s: %d partition(s) created, %d updated (%s .. %s)", settings.glue_database, table,
                 created, len(done) - created, days[0], days[-1])
    return done


def _raise_errors(table: str, action: str, errors: list | None) -> None:
    """A batch call's per-partition errors: a concurrent change is transient (the task's retry redoes it)."""
    if errors:
        raise RuntimeError(f"could not {action} {len(errors)} partition(s) of {settings.glue_database}.{table}: "
                           f"{errors[:3]}")


@failing_fast
def register_partition(table: str, day: str) -> dict:
    """Register ``table``'s partition ``dt=<day>`` (create, or update a registered one) after checking that its
    data exists; returns {table, dt, location, action}."""
    _prefix(table), _day(day)  # bad input fails before any request
    return _register_table(_client(), table, [day])[0]


@failing_fast
def register_partitions(partitions: list[tuple[str, str]]) -> list[dict]:
    """``register_partition`` of each (table, day), all checked for well-formedness first; per table one listing of
    its data, one GetPartitions and batched creates and updates."""
    by_table: dict[str, list[str]] = {}
    for table, day in partitions:
        _prefix(table), _day(day)
        by_table.setdefault(table, []).append(day)
    glue = _client()
    return [found for table, days in by_table.items() for found in _register_table(glue, table, days)]


def features_run_partitions(summary: dict) -> list[tuple[str, str]]:
    """(table, day) of every partition one run of include/jobs/churn_features.py wrote, from its run summary:
    each entity's cleaned days (clean_customers, clean_events), the snapshots' features and scoring input, and
    the snapshots whose labels it wrote (all of them with ``history_days``)."""
    try:
        found = [(f"clean_{entity}", day) for entity, entry in summary["entities"].items() for day in entry["days"]]
        found += [(table, day) for day in summary["features"]["days"] for table in ("features", "scoring_input")]
        found += [("labels", day) for day in summary["labels"]["days"]]
    except (KeyError, TypeError, AttributeError) as err:
        raise CatalogError(
            f"the features run summary of {summary.get('ds') if isinstance(summary, dict) else summary!r} does not list "
            f"the partitions it wrote ({err!r}): an earlier version of include/jobs/churn_features.py wrote it. Rerun "
            "build_features for the date (with the current code), then report_features") from err
    return found


def lake_partitions(table: str) -> list[str]:
    """The days that have a ``dt=`` folder under the table's prefix in the lake (one listing, by delimiter)."""
    _prefix(table)
    root = f"{settings.lake}/{TABLES[table]}"
    days = []
    for folder in lake.list_folders(root):
        match = _PARTITION.search(folder)
        if match and folder == f"{root}dt={match.group(1)}/":
            days.append(match.group(1))
    return days


def catalog_partitions(table: str, glue=None) -> dict[str, str]:
    """The catalog's partitions of ``table``: day -> Location."""
    _prefix(table)
    glue = glue or _client()
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=settings.glue_database, TableName=table)
    return {p["Values"][0]: p["StorageDescriptor"]["Location"] for page in pages for p in page["Partitions"]}


def _drop(glue, table: str, days: list[str]) -> None:
    for start in range(0, len(days), DELETE_BATCH):
        chunk = days[start:start + DELETE_BATCH]
        answer = glue.batch_delete_partition(DatabaseName=settings.glue_database, TableName=table,
                                             PartitionsToDelete=[{"Values": [day]} for day in chunk])
        if answer.get("Errors"):
            raise RuntimeError(f"could not drop partitions of {settings.glue_database}.{table}: {answer['Errors']}")
    if days:
        log.info("catalog: dropped %d partition(s) of %s.%s whose data is gone: %s", len(days), settings.glue_database,
                 table, ", ".join(days))


@failing_fast
def drop_expired(table: str) -> list[str]:
    """Drop the catalog's partitions of ``table`` whose days the lake no longer has; returns those days."""
    glue = _client()
    present = set(lake_partitions(table))
    gone = sorted(day for day in catalog_partitions(table, glue) if day not in present)
    _drop(glue, table, gone)
    return gone


@failing_fast
def register_present(table: str) -> dict:
    """Make the catalog's partitions of ``table`` the lake's: register the days it lacks (each checked for data),
    drop the days whose data is gone. For a table no task swaps partitions into (the stream's predictions)."""
    glue = _client()
    present = lake_partitions(table)
    registered = catalog_partitions(table, glue)
    added = [f["dt"] for f in _register_table(glue, table, [d for d in present if d not in registered])]
    gone = sorted(day for day in registered if day not in set(present))
    _drop(glue, table, gone)
    return {"table": table, "registered": added, "dropped": gone}
