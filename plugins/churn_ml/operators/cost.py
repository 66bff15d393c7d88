"""What every job-starting operator does when its job has ended: write the job's ledger record.

``JobCostMixin.record_job_cost`` reads the job's own Describe/Get answer (``job_answer``, per operator: the
resource the record is named by, and the answer) and prices what it bills (``job_usages``), then writes one
record (``churn_ml.cost.recorder``): when the deferred task resumes, whatever the job's end (a failed job was
billed too), and when a try finds the job it names already succeeded (the same record again, same key).

- A job that has not ended (the task's wait ran out while it runs) is not recorded: the retry re-attaches to it
  and records it when it has ended.
- A job whose usage cannot be priced (an answer without its billing fields, an instance type the price table
  lacks) does not fail the pipeline: its record is written **unpriced**, with the reason, under the job's own
  name, and the run's ``run_cost`` fails saying which jobs and why, so the gap is seen and fixed (add the price,
  then clear the job's task: it re-attaches to the job and prices it over the unpriced record).
- Throttling, a network error or a service's 5xx reading the answer, or a record the lake refuses, fail the task
  when the job succeeded, so its retry, which re-attaches to the job, records it. When the job itself failed,
  the job's error is the one raised: the record is written unpriced if the answer could not be read, and a
  failure to write it is logged.
"""

from __future__ import annotations

import sys
from typing import Any

from churn_ml.cost.usage import JobNotEnded, Usage


class JobCostMixin:
    """``job_answer(name)`` -> (resource, answer) and ``job_usages(answer)``: what the ended job ``name`` is billed, in
    ``cost_service``; ``cost_model_version``, when an operator has it, the registry version its record names."""

    cost_service = ""

    def job_answer(self, name: str) -> tuple[str, dict]:
        raise NotImplementedError(f"{type(self).__name__} does not say how its jobs are described")

    def job_usages(self, answer: dict) -> list[Usage]:
        raise NotImplementedError(f"{type(self).__name__} does not say how its jobs are billed")

    def record_job_cost(self, context: Any, name: str | None) -> None:
        if not name:
            return
        from churn_ml.cost import recorder

        failing = sys.exc_info()[1] is not None  # called from a finally: the job (or its wait) failed
        version = str(getattr(self, "cost_model_version", "") or "") or None
        try:
            resource = name
            try:
                resource, answer = self.job_answer(name)
                record = recorder.price_record(context, resource=resource, usages=self.job_usages(answer),
                                               service=self.cost_service, model_version=version)
            except JobNotEnded as err:
                self.log.info("%s has not ended (%s): the try that finds it ended records its cost", name, err)
                return
            except Exception as err:  # the answer lacks a billing field, a price is unknown, the answer is unreadable
                if _transient(err) and not failing:
                    raise  # a retry re-attaches to the job and reads its answer again
                self.log.exception("the ledger cannot price %s: its record is written unpriced and run_cost fails on "
                                   "it", name)
                record = recorder.unpriced_record(context, resource=resource, service=self.cost_service,
                                                  reason=f"{type(err).__name__}: {err}", model_version=version)
            recorder.store_record(context, record)
        except Exception:
            if not failing:
                raise
            self.log.exception("could not write the ledger record of %s (the task fails for the job's own error, "
                               "below)", name)


_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
                    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerError",
                    "InternalServerException", "SlowDown"}


def _transient(err: Exception) -> bool:
    """A network error, throttling or a service's 5xx: what a retry may not meet again."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(err, (ConnectionError, HTTPClientError)):
        return True
    return isinstance(err, ClientError) and (
        err.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
        or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500)
