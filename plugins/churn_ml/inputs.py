"""What a job reads, as input specs, and the fingerprint of those inputs from a listing.

A job's identity is its code, its inputs and its request (issue 24): a retry or a clear with nothing
changed re-attaches to the job that already ran, a corrected re-delivery starts a new one. The
fingerprint is how "its inputs" enters the request: for every object a job reads, its key, size and
ETag, from ListObjectsV2 (paginated), never from reading the data. On S3 a new version of an object
always has a new ETag (the MD5 of a single-part upload; of its parts' MD5s for a multipart one) or a
new size. On the local target the control plane's S3 serves the lake folder (local_aws/lake_s3.py),
whose ETag is the MD5 of the file's content, as S3's of a single-part upload: a changed file gets a
new one, an identical rewrite keeps it. One code path for both targets: the S3 hook of ``churn_ml.lake``.

An input spec is a dict, every value possibly a rendered Jinja string ("" is absent):

- ``prefix``: ``s3://bucket/key``. Ending with "/" it names a folder (every object below it);
  without, one object or the folder of that name (``.../baseline.json`` is that object, never
  ``.../baseline.json.tmp``). A segment ``*`` stands for any one segment, as in the jobs' globs
  (``monitoring/capture/*/*/2026/07/02/``); it is resolved by listing that level with a delimiter.
- ``from`` / ``before`` (``YYYY-MM-DD``): keep only the objects of the ``dt=YYYY-MM-DD`` partitions
  right below the prefix (a folder, ending with "/") within ``[from, before)``; objects outside a
  partition are then left out. Without both, the whole prefix.
- ``every`` (days, needs ``before``): keep only the days ``before - 1 - k * every``, the snapshots a
  job spaced that way picks (the training set's ``snapshot_every``).

The per-job spec lists (``*_job_inputs``) return templates for the DAG files' ``inputs=[...]``; each
says what its job reads for a given ``ds`` and params, and leaves out what the job writes itself
(else a clear with nothing changed would see the job's own output as a changed input).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from churn_ml.errors import CannotSucceedOnRetry

# Days before a snapshot whose events its features use, and the label window (include/churn/features.py:
# LOOKBACK_DAYS and LABEL_WINDOW_DAYS; that module imports pyspark, which plugins do not load).
# tests/unit/test_inputs.py holds these to the jobs' values.
LOOKBACK_DAYS = 90
LABEL_WINDOW_DAYS = 30
ENTITIES = ("customers", "events")  # include/churn/schema.py ENTITIES

_DAY = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/")
_KEYS = {"prefix", "from", "before", "every"}


class InputSpecError(CannotSucceedOnRetry, ValueError):
    """An input spec that cannot be listed: the same spec fails on every try."""


@dataclass(frozen=True)
class InputSpec:
    prefix: str
    start: dt.date | None = None
    before: dt.date | None = None
    every: int | None = None

    @classmethod
    def parse(cls, spec: dict) -> InputSpec:
        if not isinstance(spec, dict):
            raise InputSpecError(f"an input spec is a dict with 'prefix' (and optionally 'from', 'before', 'every'), "
                                 f"got {type(spec).__name__}: {spec!r}")
        unknown = set(spec) - _KEYS
        if unknown:
            raise InputSpecError(f"input spec {spec!r} has unknown keys {sorted(unknown)}; it takes {sorted(_KEYS)}")
        prefix = str(spec.get("prefix") or "").strip()
        if not re.match(r"^s3a?://[^/]+/", prefix) or prefix.startswith("s3a://"):
            raise InputSpecError(
                f"input spec {spec!r}: 'prefix' must be an s3://bucket/key URI of what the job reads, got {prefix!r} "
                "(a template that rendered empty or to None: check the value it is built from, e.g. an XCom)"
            )
        start, before = _date(spec, "from"), _date(spec, "before")
        if start and before and start > before:
            raise InputSpecError(f"input spec {spec!r}: 'from' {start} is after 'before' {before}")
        every = spec.get("every")
        every = None if every in (None, "") else _positive(spec, every)
        if every and before is None:
            raise InputSpecError(f"input spec {spec!r}: 'every' counts days back from 'before', which it lacks")
        if (start or before) and not prefix.endswith("/"):
            raise InputSpecError(f"input spec {spec!r}: with 'from'/'before' the prefix is the folder of the dt= "
                                 "partitions and ends with '/' (e.g. s3://lake/raw/events/)")
        return cls(prefix, start, before, every)

    @property
    def ranged(self) -> bool:
        return self.start is not None or self.before is not None

    def keeps(self, key: str) -> bool:
        """Whether the object ``key`` (of this spec's bucket, found by listing the prefix) is read."""
        _, prefix = _split(self.prefix)
        if not (prefix.endswith("/") or not prefix or key == prefix or key.startswith(prefix + "/")):
            return False
        if not self.ranged:
            return True
        found = _DAY.match(key[len(prefix):])
        if found is None:
            return False
        day = dt.date.fromisoformat(found.group(1))
        if (self.start and day < self.start) or (self.before and day >= self.before):
            return False
        return not self.every or (self.before - dt.timedelta(days=1) - day).days % self.every == 0

    def describe(self) -> dict:
        out = {"prefix": self.prefix, "from": _iso(self.start), "before": _iso(self.before)}
        return {**out, "every": self.every} if self.every else out


def fingerprint(specs: list[dict]) -> dict:
    """The fingerprint of what ``specs`` name: ``digest`` (16 hex digits), ``objects`` and ``bytes`` in all,
    and per spec (in order) its normalised values with its ``objects``, ``bytes`` and ``partitions`` (the
    locations its objects are in: what the job's lineage names as its inputs).

    The digest covers, per spec, the spec and the sorted (key, size, ETag) of every object it keeps, so
    it changes when an object is added, removed or rewritten, and not for objects outside a spec's range
    or prefix, nor with the listing's order. Lists only; an empty input is a valid fingerprint (whether
    that is an error is the job's to say).
    """
    if isinstance(specs, dict) or not isinstance(specs, (list, tuple)):
        raise InputSpecError(f"inputs must be a list of input specs, got {type(specs).__name__}: {specs!r}")
    parsed = [InputSpec.parse(spec) for spec in specs]
    client = _client() if parsed else None
    canonical, summary = [], []
    for spec in parsed:
        found = sorted(_objects(client, spec))
        canonical.append({**spec.describe(), "objects": found})
        summary.append({**spec.describe(), "objects": len(found), "bytes": sum(size for _, size, _ in found),
                        "partitions": sorted({_location(uri, spec) for uri, _, _ in found})})
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return {
        "digest": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
        "objects": sum(s["objects"] for s in summary),
        "bytes": sum(s["bytes"] for s in summary),
        "inputs": summary,
    }


def objects(spec: dict) -> list[tuple[str, int, str]]:
    """(URI, size, ETag) of every object one spec keeps, sorted: what its part of the digest covers."""
    return sorted(_objects(_client(), InputSpec.parse(spec)))


_PARTITION_DIR = re.compile(r"^(.*?/(?:dt|ds)=[^/]+)/")


def _location(uri: str, spec: InputSpec) -> str:
    """Where one object of ``spec`` is, for lineage: its ``dt=``/``ds=`` partition (``s3://b/features/dt=D``);
    the object itself when the spec names one object; otherwise its folder."""
    match = _PARTITION_DIR.match(uri)
    if match:
        return match.group(1)
    return uri.rsplit("/", 1)[0] if spec.prefix.endswith("/") else uri


def partitions(spec: dict) -> list[str]:
    """The locations one spec's objects are in (``_location``), sorted, each once: what a job read, for its
    lineage, when its fingerprint (which keeps them) is not at hand."""
    parsed = InputSpec.parse(spec)
    return sorted({_location(uri, parsed) for uri, _, _ in _objects(_client(), parsed)})


def _client():
    from churn_ml import lake

    return lake._s3_hook().get_conn()


# ------------------------------------------------------------------ the jobs' inputs (templates)
def _ds(days: int | str) -> str:
    return f"macros.ds_add(ds, {days})"


def features_job_inputs(lake: str) -> list[dict]:
    """include/jobs/churn_features.py for ``ds`` and ``params.history_days`` (N).

    - ``raw/<entity>/``: N = 0 reads (and validates) the one partition ``dt = ds - 1``; N > 0 every
      landed customers partition before ``ds``, and the events ones from the feature window of the
      first snapshot (``ds - N - LOOKBACK_DAYS``) on.
    - ``clean/<entity>/``: the features and labels read every clean partition before ``ds`` (events
      from the window on, and every cancellation before). The job writes the partitions it cleans, so
      the input is the clean partitions before the first of them: N = 0, before ``ds - 1``; N > 0, the
      events before the window (the cancellations older than it) and no customers (it cleans every
      landed customers partition itself; only a clean partition whose raw one is gone is not seen).
    """
    history = "params.history_days | int"
    window = f"macros.ds_add(ds, -({history}) - {LOOKBACK_DAYS})"
    yesterday = _ds(-1)
    raw_from = {
        "customers": f"{{{{ '' if {history} else {yesterday} }}}}",
        "events": f"{{{{ {window} if {history} else {yesterday} }}}}",
    }
    clean_before = {
        "customers": f"{{{{ ds if {history} else {yesterday} }}}}",
        "events": f"{{{{ {window} if {history} else {yesterday} }}}}",
    }
    specs = [{"prefix": f"{lake}/raw/{entity}/", "from": raw_from[entity], "before": "{{ ds }}"} for entity in ENTITIES]
    for entity in ENTITIES:
        spec = {"prefix": f"{lake}/clean/{entity}/", "before": clean_before[entity]}
        if entity == "customers":
            # N > 0: [ds, ds) keeps nothing; N = 0: no lower bound.
            spec["from"] = f"{{{{ ds if {history} else '' }}}}"
        specs.append(spec)
    return specs


def training_set_job_inputs(lake: str) -> list[dict]:
    """include/jobs/churn_training_set.py for ``ds``: the features and labels of the snapshots it picks,
    every ``snapshot_every`` days back from the newest closed one (``ds - LABEL_WINDOW_DAYS``) to
    ``ds - lookback_days``. It writes only ``training_sets/ds=<ds>/``."""
    first = "{{ macros.ds_add(ds, -(params.lookback_days | int)) }}"
    before = f"{{{{ {_ds(1 - LABEL_WINDOW_DAYS)} }}}}"
    every = "{{ params.snapshot_every }}"
    return [{"prefix": f"{lake}/features/", "from": first, "before": before, "every": every},
            {"prefix": f"{lake}/labels/", "from": first, "before": before, "every": every}]


def monitoring_job_inputs(lake: str, baseline: str) -> list[dict]:
    """include/jobs/churn_monitoring.py for ``ds``: the baseline object (known at run time: the
    production model's), the day's batch predictions and their features, the endpoint's data capture
    of the UTC day (``<endpoint>/<variant>/yyyy/mm/dd/hh/``, as the job globs it), the stream's
    predictions of the day, and the predictions and labels of ``ds - LABEL_WINDOW_DAYS`` (realized
    quality). It writes only ``monitoring/daily/dt=<ds>/``."""
    closed = f"{{{{ {_ds(-LABEL_WINDOW_DAYS)} }}}}"
    day_path = "{{ macros.ds_format(ds, '%Y-%m-%d', '%Y/%m/%d') }}"
    return [
        {"prefix": baseline},
        {"prefix": f"{lake}/predictions/dt={{{{ ds }}}}/"},
        {"prefix": f"{lake}/features/dt={{{{ ds }}}}/"},
        {"prefix": f"{lake}/monitoring/capture/*/*/{day_path}/"},
        {"prefix": f"{lake}/stream_predictions/dt={{{{ ds }}}}/"},
        {"prefix": f"{lake}/predictions/dt={closed}/"},
        {"prefix": f"{lake}/labels/dt={closed}/"},
    ]


def scoring_inputs(partition: str) -> list[dict]:
    """The batch transform of churn_batch_scoring: the day's scoring input partition (its manifest,
    written per run, lists its data objects; the model is named by its URI in the request)."""
    return [{"prefix": partition}]


# ------------------------------------------------------------------ listing
def _objects(client, spec: InputSpec) -> Iterator[tuple[str, int, str]]:
    """(URI, size, ETag) of the objects ``spec`` keeps. A ranged spec's listing starts after the key
    just before its first day and stops at its ``before`` day (S3 lists keys in order, and ``dt=``
    partitions right below the prefix sort by date): a daily job lists its days, not the history."""
    bucket, prefix = _split(spec.prefix)
    for resolved in _expand(client, bucket, prefix):
        held = spec if resolved == prefix else InputSpec(f"s3://{bucket}/{resolved}", spec.start, spec.before, spec.every)
        params = {"Bucket": bucket, "Prefix": resolved}
        stop = f"{resolved}dt={spec.before.isoformat()}" if spec.before else None
        if spec.start:
            params["StartAfter"] = f"{resolved}dt={spec.start.isoformat()}"  # sorts before "<prefix>dt=<from>/..."
        for page in client.get_paginator("list_objects_v2").paginate(**params):
            for item in page.get("Contents", []):
                key = item["Key"]
                if stop and key >= stop:
                    break
                if held.keeps(key):
                    yield f"s3://{bucket}/{key}", int(item["Size"]), item.get("ETag", "").strip('"')
            else:
                continue
            break


def _expand(client, bucket: str, prefix: str) -> list[str]:
    """The prefixes ``prefix`` stands for once its ``*`` segments are resolved (by delimiter listings)."""
    if "*" not in prefix:
        return [prefix]
    head, _, rest = prefix.partition("*")
    if head and not head.endswith("/") or rest and not rest.startswith("/"):
        raise InputSpecError(f"s3://{bucket}/{prefix}: '*' stands for one whole segment ('a/*/b/'), not part of a name")
    found: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=head, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            found.extend(_expand(client, bucket, common["Prefix"] + rest[1:]))
    return sorted(found)


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return bucket, key


def _date(spec: dict, name: str) -> dt.date | None:
    value = spec.get(name)
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InputSpecError(f"input spec {spec!r}: {name!r} must be a date YYYY-MM-DD (or empty), "
                             f"got {value!r}") from None


def _positive(spec: dict, value) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise InputSpecError(f"input spec {spec!r}: 'every' must be a whole number of days >= 1, got {value!r}")
    return number


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None
