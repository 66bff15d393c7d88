"""Names become paths only after they pass the service's rule (botocore's model) and the path floor."""

from __future__ import annotations

import logging

import pytest

from churn_ml import naming
from local_aws.common import control_plane, path_segment
from local_aws.models import create_model
from local_aws.training import run_training_job
from support import model_request, training_request

LOG = logging.getLogger("test")
BAD = ["../../outside", "a/b", "x-", "-x", "a_b", "é", "", "x" * 64, "a\nb"]


@pytest.mark.parametrize("name", BAD)
def test_names_outside_sagemakers_rule_are_refused_with_its_wording(name):
    with pytest.raises(ValueError, match="(?s)1 validation error detected: Value .* at 'endpointName' failed to satisfy"):
        naming.check_name(name)


def test_the_rule_is_read_from_botocores_model_per_operation():
    assert naming.check_name("churn-xgboost-v3-1a2b3c4d") == "churn-xgboost-v3-1a2b3c4d"
    assert naming.check_name("a" * 63, "sagemaker", "CreateModel", "ModelName")
    with pytest.raises(ValueError, match="length less than or equal to 32"):
        naming.check_name("t" * 33, "sagemaker", "CreateHyperParameterTuningJob", "HyperParameterTuningJobName")
    with pytest.raises(ValueError, match="must be a string"):
        naming.check_name(None)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b", "a\0b", "x" * 256])
def test_the_control_plane_takes_no_name_that_leaves_its_folder(lake_root, name):
    with pytest.raises(ValueError, match="cannot be a resource name"):
        path_segment(name)
    with pytest.raises(ValueError, match="cannot be a resource name"):
        control_plane("sagemaker", "training-jobs", name)
    assert not (lake_root.parent / "training-jobs").exists()


def test_jobs_and_models_with_bad_names_fail_before_anything_is_written(lake_root):
    request = training_request()
    request["TrainingJobName"] = "../../escape"
    with pytest.raises(ValueError, match="trainingJobName"):
        run_training_job(request, LOG)
    with pytest.raises(ValueError, match="modelName"):
        create_model(model_request("../m", "s3://churn-lake/models/x/model.tar.gz"), LOG)
    assert not any(lake_root.parent.glob("escape*")) and not (lake_root / ".control-plane" / "sagemaker" / "training-jobs").exists()
