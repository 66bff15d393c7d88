"""One job of the local control plane, run to its end in a process of its own.

The control plane (``local_aws.control_plane``) answers Create*/StartJobRun at once, as AWS does,
and starts ``python -m local_aws.worker KIND REQUEST_FILE``; the worker runs the request with the
kind's runner, which keeps the job's Describe record in the control plane folder as it goes
(InProgress, the secondary statuses, then Completed, Failed or Stopped with its FailureReason).
Describe* reads that record, so the provider's triggers and waiters see the job's real progress.

What the runner prints goes to ``worker.log`` beside the record: the job's log, as CloudWatch
holds a SageMaker job's. SIGTERM (StopTrainingJob, CancelJobRun, the control plane stopping) ends
the job as Stopped.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path


def _stop_on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the runners record a job they did not finish as Stopped


def run(kind: str, request: dict, log: logging.Logger) -> dict:
    if kind == "training":
        from local_aws.training import run_training_job

        return run_training_job(request, log)
    if kind == "tuning":
        from local_aws.tuning import run_tuning_job

        return run_tuning_job(request, log)
    if kind == "transform":
        from local_aws.transform import run_transform_job

        return run_transform_job({"Transform": request}, log)
    if kind == "endpoint":
        from local_aws.endpoints import deploy

        return deploy({"Endpoint": request}, log)
    if kind == "spark":
        from local_aws.spark import run_spark_job

        return run_spark_job(log=log, **request)
    raise ValueError(f"unknown job kind {kind!r}: training, tuning, transform, endpoint or spark")


def main(argv: list[str] | None = None) -> int:
    kind, request_file = (argv if argv is not None else sys.argv[1:])[:2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    signal.signal(signal.SIGTERM, _stop_on_term)
    log = logging.getLogger(f"local_aws.{kind}")
    request = json.loads(Path(request_file).read_text())
    try:
        run(kind, request, log)
    except KeyboardInterrupt:
        log.warning("stopped")
        return 143
    except Exception as err:  # the runner recorded the failure in the job's record; the log says why
        log.error("the job failed: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
