"""S3: the sensor that waits for a lake partition's ``_SUCCESS`` marker."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk.exceptions import AirflowSensorTimeout

from churn_ml import lake


class LakeKeySensor(S3KeySensor):
    """S3KeySensor for full ``s3://`` keys that says what is missing when it times out.

    Deferrable: it never holds a worker slot while it waits (the provider's S3 trigger polls on the
    triggerer). At ``timeout`` it fails saying which partition is missing and what to do.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)

    def _keys(self) -> list[str]:
        return [self.bucket_key] if isinstance(self.bucket_key, str) else list(self.bucket_key)

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as err:
            raise self._timed_out(err) from err

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as err:
            raise self._timed_out(err) from err

    def _timed_out(self, err: AirflowSensorTimeout) -> AirflowSensorTimeout:
        keys = [k for k in self._keys() if not lake.exists(k)] or self._keys()
        return AirflowSensorTimeout(
            f"{err}. Still missing after {self.timeout:.0f} s: {', '.join(keys)} (a partition is complete when "
            "its _SUCCESS marker exists). Produce that partition (the upstream export, or the DAG that writes it, "
            "for this date), then clear this task to wait again; or mark the run failed if the date has no data."
        )
