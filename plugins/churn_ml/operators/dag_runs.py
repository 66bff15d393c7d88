"""Triggering DAG runs."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator


class RetrainingTriggerOperator(TriggerDagRunOperator):
    """TriggerDagRunOperator whose ``note`` (the triggered run's note in the UI) is templated too, so
    that it can carry the reason the run was triggered for."""

    template_fields: Sequence[str] = (*TriggerDagRunOperator.template_fields, "note")
