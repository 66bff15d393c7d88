"""What AWS would bill for the work a local run really did: EMR Serverless' resource utilization of a job run.

GetJobRun of an ended EMR Serverless run carries ``totalResourceUtilization`` and ``billedResourceUtilization``
(vCPU-hours, memory GB-hours, storage GB-hours). The control plane (``local_aws.spark_api``) computes both
from the run's measured time (the local runner's ``totalExecutionDurationSeconds``) and the capacity the
request asked for, with the service's rules:

AWS's rules, applied as documented (EMR Serverless user guide: "Spark job properties" and "Supported worker
configurations"; the API reference of ``JobRun``):

- the workers are a driver and ``spark.executor.instances`` executors, each of ``spark.driver.cores`` /
  ``spark.executor.cores`` vCPUs, ``spark.driver.memory`` / ``spark.executor.memory`` and
  ``spark.emr-serverless.driver.disk`` / ``spark.emr-serverless.executor.disk``, from the request's
  ``sparkSubmitParameters`` (``--conf``) over its ``spark-defaults`` classification, else EMR Serverless'
  defaults (``EMR_DEFAULTS``: 4 vCPUs, 14 GB, 20 GB of disk; 3 executors);
- a worker's memory is the Spark memory plus Spark's memory overhead (10 %, at least 384 MB), rounded up to
  the worker sizes of its vCPU count (``EMR_WORKER_MEMORY``): the default 14 GB is a 16 GB worker, 27 GB a
  30 GB one; a vCPU count, memory or disk outside those sizes is refused (ValueError: the control plane's
  ValidationException at StartJobRun);
- ``totalResourceUtilization``: every worker for the run's duration, rounded up to the second, its whole disk;
- ``billedResourceUtilization``: every worker for at least one minute (``EMR_MINIMUM_SECONDS``), storage only
  beyond the 20 GB each worker has free (``EMR_FREE_STORAGE_GB``); a run of the defaults that ends within
  the minute is billed 0.267 vCPU-hours and 1.067 memory GB-hours (16 vCPUs and 64 GB for a minute);
- both reported to 3 decimals (``REPORTED_DECIMALS``), as AWS's answers show them.

Approximations (the local target runs one ``spark-submit --master local[N]``, not a fleet of workers):

- every requested worker counts for the whole measured run: dynamic allocation (which on AWS adds and
  removes executors as the stages need them, from ``spark.dynamicAllocation.initialExecutors``, 3) is not
  modelled, and no pre-initialized capacity is assumed (idle pre-initialized workers are not billed per run);
- the measured time is the local ``spark-submit``'s, start to end, which stands for the workers' time on
  AWS (their start-up and the application's are not added);
- a vCPU, memory or disk figure is priced as the request sizes it, not as the worker used it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600
# EMR Serverless' Spark defaults (user guide, "Spark job properties"), for what a request does not set.
EMR_DEFAULTS = {
    "spark.driver.cores": "4",
    "spark.driver.memory": "14g",
    "spark.emr-serverless.driver.disk": "20g",
    "spark.executor.cores": "4",
    "spark.executor.memory": "14g",
    "spark.emr-serverless.executor.disk": "20g",
    "spark.executor.instances": "3",
}
# The Spark settings that size a run's workers: accepted at StartJobRun (the local runner does not apply
# them to its local[N] Spark: they are the billed capacity).
EMR_CAPACITY_CONF = frozenset(EMR_DEFAULTS)
# Supported worker configurations: vCPUs -> (minimum GB, maximum GB, increment GB) of memory.
EMR_WORKER_MEMORY = {1: (2, 8, 1), 2: (4, 16, 1), 4: (8, 30, 1), 8: (16, 60, 4), 16: (32, 120, 8)}
EMR_DISK_GB = (20, 200)  # a worker's (standard) disk
EMR_FREE_STORAGE_GB = 20  # per worker, not billed
EMR_MINIMUM_SECONDS = 60  # per worker
MEMORY_OVERHEAD_FACTOR, MEMORY_OVERHEAD_MIN_MIB = 0.10, 384  # Spark's spark.{driver,executor}.memoryOverhead
REPORTED_DECIMALS = 3  # GetJobRun's figures, as AWS's answers show them (a default run's minimum: 0.267 vCPU-hours)

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)b?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}


@dataclass(frozen=True)
class EmrWorker:
    """One EMR Serverless worker as billed: vCPUs, memory GB (with the overhead, at a worker size), disk GB."""

    vcpu: int
    memory_gb: int
    disk_gb: int


@dataclass(frozen=True)
class EmrCapacity:
    """The workers a run asked for: a driver and ``executors`` executors alike."""

    driver: EmrWorker
    executor: EmrWorker
    executors: int

    def workers(self) -> list[EmrWorker]:
        return [self.driver, *[self.executor] * self.executors]


def _mib(value: str, key: str, default_unit: str) -> float:
    """A Spark size (``14g``, ``512m``, ``20G``, ``200GB``; no unit: ``default_unit``) in MiB."""
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"--conf {key}={value!r} is not a size: expected a whole number with a unit, like 14g or 20G")
    return int(match.group(1)) * _MIB_PER_UNIT[(match.group(2) or default_unit).lower()]


def _whole(value: str, key: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"--conf {key}={value!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"--conf {key}={value!r}: expected a number >= 0")
    return number


def _worker(properties: Mapping[str, str], role: str) -> EmrWorker:
    cores_key, memory_key, disk_key = f"spark.{role}.cores", f"spark.{role}.memory", f"spark.emr-serverless.{role}.disk"
    vcpu = _whole(properties[cores_key], cores_key)
    if vcpu not in EMR_WORKER_MEMORY:
        raise ValueError(f"--conf {cores_key}={vcpu}: an EMR Serverless worker has "
                         f"{', '.join(map(str, EMR_WORKER_MEMORY))} vCPUs")
    low, high, step = EMR_WORKER_MEMORY[vcpu]
    spark_mib = _mib(properties[memory_key], memory_key, "m")
    needed_gib = (spark_mib + max(MEMORY_OVERHEAD_MIN_MIB, MEMORY_OVERHEAD_FACTOR * spark_mib)) / 1024
    memory = max(low, math.ceil(round(needed_gib, 6) / step) * step)
    if memory > high:
        raise ValueError(f"--conf {memory_key}={properties[memory_key]}: with Spark's memory overhead it needs a "
                         f"{memory} GB worker; a {vcpu}-vCPU worker has at most {high} GB (lower the memory or "
                         "raise the cores)")
    disk_gib = _mib(properties[disk_key], disk_key, "g") / 1024
    if not EMR_DISK_GB[0] <= disk_gib <= EMR_DISK_GB[1] or disk_gib != int(disk_gib):
        raise ValueError(f"--conf {disk_key}={properties[disk_key]}: a worker's disk is a whole number of GB "
                         f"from {EMR_DISK_GB[0]} to {EMR_DISK_GB[1]}")
    return EmrWorker(vcpu, memory, int(disk_gib))


def emr_capacity(conf: Mapping[str, str]) -> EmrCapacity:
    """The workers a run's Spark properties ask for (keys of ``EMR_CAPACITY_CONF``; the rest ignored), with EMR
    Serverless' defaults for what is unset; ValueError for a size EMR Serverless does not have."""
    properties = {**EMR_DEFAULTS, **{k: v for k, v in conf.items() if k in EMR_CAPACITY_CONF}}
    return EmrCapacity(_worker(properties, "driver"), _worker(properties, "executor"),
                       _whole(properties["spark.executor.instances"], "spark.executor.instances"))


def emr_resource_utilization(capacity: EmrCapacity, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """(``totalResourceUtilization``, ``billedResourceUtilization``) of a run of ``capacity`` that ran ``seconds``."""
    used = math.ceil(round(max(0.0, seconds), 6))  # rounded up to the second
    billed = max(EMR_MINIMUM_SECONDS, used)
    workers = capacity.workers()

    def hours(per_worker, duration: float) -> float:
        return round(sum(per_worker(w) for w in workers) * duration / SECONDS_PER_HOUR, REPORTED_DECIMALS)

    total = {"vCPUHour": hours(lambda w: w.vcpu, used), "memoryGBHour": hours(lambda w: w.memory_gb, used),
             "storageGBHour": hours(lambda w: w.disk_gb, used)}
    charged = {"vCPUHour": hours(lambda w: w.vcpu, billed), "memoryGBHour": hours(lambda w: w.memory_gb, billed),
               "storageGBHour": hours(lambda w: max(0, w.disk_gb - EMR_FREE_STORAGE_GB), billed)}
    return total, charged
