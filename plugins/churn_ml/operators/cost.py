"""What every job-starting operator does when its job has ended: write the job's ledger record.

``JobCostMixin.record_job_cost`` reads the job's own Describe/Get answer (``job_usage``, per operator) and
writes one record for it (``churn_ml.cost.recorder``): when the deferred task resumes, whatever the job's
end (a failed job was billed too), and when a try finds the job it names already succeeded (the same record
again, under the same key). A job that cannot be priced fails the task when the job succeeded: the retry
re-attaches to the job and writes the record, so no job goes unrecorded and none is run again; when the job
itself failed, the job's error is the one raised and the ledger's is logged beside it.
"""

from __future__ import annotations

import sys
from typing import Any

from churn_ml.cost.usage import Usage


class JobCostMixin:
    """``job_usage(name)`` -> (resource, usages, service): what the ended job ``name`` is billed, from its answer."""

    def job_usage(self, name: str) -> tuple[str, list[Usage], str]:
        raise NotImplementedError(f"{type(self).__name__} does not say how its jobs are billed")

    def record_job_cost(self, context: Any, name: str | None) -> None:
        if not name:
            return
        from churn_ml.cost import recorder

        failing = sys.exc_info()[1] is not None  # called from a finally: the job (or its wait) failed
        try:
            resource, usages, service = self.job_usage(name)
            recorder.write_record(context, resource=resource, usages=usages, service=service)
        except Exception:
            if not failing:
                raise
            self.log.exception("could not write the ledger record of %s (the task fails for the job's own error, "
                               "below)", name)
