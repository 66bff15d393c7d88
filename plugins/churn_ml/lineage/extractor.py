"""The OpenLineage extractor of every task of the churn DAGs (registered by ``[openlineage] extractors``).

The OpenLineage provider's listener asks it for a task's lineage when the task starts and when it
ends. At the end it evaluates the task's declaration (``churn_ml.lineage.declared``) on the finished
run, merges what the operator reports itself (the provider's SageMaker training and transform
operators have ``get_openlineage_facets_on_complete``: their datasets, renamed to the one scheme),
and adds the job's identity as a run facet: the code version of include/ the job ran, its name, the
digest of its inputs (``churn_ml.operators.base``). A task the table lacks is reported as an error in
the task log (and fails tests/unit/test_lineage.py first).
"""

from __future__ import annotations

from typing import Any

import attr
from airflow.providers.openlineage.extractors.base import DefaultExtractor, OperatorLineage
from openlineage.client.facet_v2 import RunFacet

from churn_ml.lineage import names
from churn_ml.lineage.declared import Declared, TaskRun, declared

# The operators of the DAGs (task_type): tests/unit/test_lineage.py checks this covers every task.
OPERATORS = (
    "_PythonDecoratedOperator",
    "_ShortCircuitDecoratedOperator",
    "LakeKeySensor",
    "SparkOnEmrServerlessOperator",
    "SparkOnGlueOperator",
    "ChurnTuningOperator",
    "ChurnTrainingOperator",
    "EndpointDeployOperator",
    "BatchScoringOperator",
    "SnsPublishOperator",
    "RetrainingTriggerOperator",
    "SQLCheckOperator",
    "SQLValueCheckOperator",
)

FACET_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet"


@attr.define
class ChurnJobRunFacet(RunFacet):
    """The identity of the job a task started (or re-attached to): what makes a rerun recompute."""

    jobName: str | None = None
    codeVersion: str | None = None
    inputsDigest: str | None = None
    recompute: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA


def task_run(task_instance: Any, operator: Any) -> TaskRun:
    from churn_ml.settings import settings

    context = task_instance.get_template_context()
    region, account = names.aws_location()
    return TaskRun(
        ds=context["ds"], lake=settings.lake, params=dict(context.get("params") or {}),
        result=task_instance.xcom_pull(task_ids=task_instance.task_id),
        xcoms=lambda task_id, key: task_instance.xcom_pull(task_ids=task_id, key=key),
        operator=operator, region=region, account=account,
    )


def renamed(found: list) -> list[str]:
    """An operator's own datasets as references (``s3://`` namespaces joined with their names)."""
    refs = []
    for ds in found or []:
        refs.append(f"{ds.namespace}/{ds.name}" if ds.namespace.startswith("s3://") else f"{ds.namespace}:{ds.name}")
    return refs


def lineage_of(dag_id: str, task_id: str, run: TaskRun, own: OperatorLineage | None = None) -> OperatorLineage:
    """The task's OperatorLineage: its declaration and the operator's own datasets, one scheme, each once."""
    found: Declared = declared(dag_id, task_id, run)
    own = own or OperatorLineage()
    facets: dict = dict(own.run_facets or {})
    identity = run.xcom(task_id, "job_identity")
    if identity:
        facets["churn_job"] = ChurnJobRunFacet(
            jobName=identity.get("name"), codeVersion=identity.get("code_version"),
            inputsDigest=(identity.get("inputs") or {}).get("digest"), recompute=identity.get("recompute"),
        )
    return OperatorLineage(
        inputs=names.inputs([*found.inputs, *renamed(own.inputs)]),
        outputs=names.outputs([*found.outputs, *renamed(own.outputs)]),
        run_facets=facets,
        job_facets=dict(own.job_facets or {}),
    )


class ChurnLineageExtractor(DefaultExtractor):
    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        return list(OPERATORS)

    def extract_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        own = super().extract_on_complete(task_instance)
        return lineage_of(self.operator.dag_id, self.operator.task_id, task_run(task_instance, self.operator), own)

    def extract_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        # A failed task still says what it was reading; what it would have written may not exist.
        try:
            return self.extract_on_complete(task_instance)
        except Exception as error:
            # What a failed job did write is unknown; what it was given to read is in its input specs.
            self.log.warning("lineage of failed %s.%s: %s (reporting its inputs only)", self.operator.dag_id,
                             self.operator.task_id, error)
            try:
                return OperatorLineage(inputs=names.inputs(task_run(task_instance, self.operator).job_inputs()))
            except Exception as second:
                self.log.warning("inputs of failed %s.%s: %s", self.operator.dag_id, self.operator.task_id, second)
                return OperatorLineage()
