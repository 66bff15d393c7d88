
"""The lake sensor never holds a worker slot while it waits, and its timeout says what is missing."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout

from churn_ml import lake
from churn_ml.operators import LakeKeySensor

# The plugins read and write the lake through S3: moto's, in this process, over the test's lake folder.
pytestmark = pytest.mark.usefixtures("lake_s3")

KEYS = ["s3://churn-lake/raw/customers/dt=2026-07-01/_SUCCESS", "s3://churn-lake/raw/events/dt=2026-07-01/_SUCCESS"]


def test_it_defers_on_both_targets():
    """The provider's S3 trigger waits on the triggerer (locally, against the control plane's S3:
    tests/local_aws/test_control_plane.py pokes the lake through it)."""
    sensor = LakeKeySensor(task_id="wait", bucket_key=KEYS, timeout=600)
    assert sensor.deferrable


def test_the_timeout_names_the_missing_partition_and_what_to_do(lake_root):
    lake.write_bytes(KEYS[0], b"")
    sensor = LakeKeySensor(task_id="wait", bucket_key=KEYS, timeout=600)
    error = sensor._timed_out(AirflowSensorTimeout("Sensor has timed out"))
    assert isinstance(error, AirflowSensorTimeout)
    message = str(error)
    assert KEYS[1] in message and KEYS[0] not in message
    assert "600 s" in message and "clear this task" in message
