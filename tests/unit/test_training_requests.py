"""The request builders: what their templates render to, and that each call is a request of its own.

That SageMaker (botocore's service model) accepts the requests is checked where the DAGs send them:
tests/contract/test_aws_requests.py.
"""

from __future__ import annotations

import copy

import jinja2

from churn_ml import training_requests as requests
from churn_ml.settings import settings

TRAINING_SET = "s3://churn-lake/training_sets/ds=2026-07-06"
BEST = {"max_depth": "4", "eta": "0.12", "min_child_weight": "3.5", "subsample": "0.8", "colsample_bytree": "0.9",
        "reg_lambda": "2.0"}


class FakeTI:
    def __init__(self, xcoms: dict) -> None:
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str) -> object:
        return self.xcoms[task_ids]


def render(value, **context):
    """Render every string of a request as the operators' template fields are (undefined names fail here)."""
    if isinstance(value, str):
        return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(**context)
    if isinstance(value, dict):
        return {k: render(v, **context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, **context) for v in value]
    return value


def training(**overrides) -> dict:
    return requests.training_request(**{
        "training_set": TRAINING_SET, "output_path": "s3://churn-lake/models/churn/",
        "checkpoints": "s3://churn-lake/checkpoints/churn/", "fingerprint": requests.xcom("inspect", "fingerprint"),
        "tuning_task_id": "tune", "dag_id": "churn_training", **overrides,
    })


def test_the_final_training_takes_the_tuned_values_from_the_tuning_job_and_the_fixed_ones_from_params(aws_local):
    ti = FakeTI({"inspect": {"fingerprint": "f1"},
                 "tune": {"Tuning": {"BestTrainingJob": {"TunedHyperParameters": BEST}}}})
    params = {"static_hyperparameters": {**requests.STATIC_HYPERPARAMETERS, "num_round": 900}}
    rendered = render(training(), ti=ti, params=params, churn=settings)
    assert set(BEST) == set(requests.TUNED)  # what the tuning job searches is what the final training takes
    assert rendered["HyperParameters"] == {
        **BEST, "num_round": "900", "early_stopping_rounds": "40", "seed": "42", "checkpoint_every": "50",
        "sagemaker_program": "churn_train.py", "sagemaker_submit_directory": f"{settings.code}/sagemaker/sourcedir.tar.gz",
        "training_set_fingerprint": "f1",
    }
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in rendered["InputDataConfig"]] == [
        f"{TRAINING_SET}/{split}/" for split in ("train", "validation", "holdout")]


def test_the_tuning_job_never_sees_the_holdout_and_searches_the_ranges():
    tuning = requests.tuning_request(training_set=TRAINING_SET, output_path="s3://churn-lake/models/churn-tuning/",
                                     checkpoints="s3://churn-lake/checkpoints/churn/", fingerprint="f1", dag_id="d")
    definition = tuning["TrainingJobDefinition"]
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == ["train", "validation"]
    assert tuning["HyperParameterTuningJobConfig"]["ParameterRanges"] == requests.TUNING_RANGES
    assert not set(requests.TUNED) & set(definition["StaticHyperParameters"])


def test_every_call_builds_a_request_of_its_own():
    """The operators fill in names, add channels and pop the Model in the dict they get: one task's
    request must never change another's."""
    expected = copy.deepcopy(training())
    first, second = training(), training()
    first["AlgorithmSpecification"]["MetricDefinitions"].append({"Name": "x", "Regex": "x"})
    first["InputDataConfig"].append({"ChannelName": "champion"})
    first["StoppingCondition"]["MaxWaitTimeInSeconds"] = 1
    tuning = requests.tuning_request(training_set=TRAINING_SET, output_path="o", checkpoints="c", fingerprint="f", dag_id="d")
    tuning["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"][0]["MaxValue"] = "99"
    assert second == expected and training() == expected
    assert requests.TUNING_RANGES["IntegerParameterRanges"][0]["MaxValue"] == "8"
    transform = requests.transform_request(model_data_url="m", manifest="s3://l/x.manifest", output_path="s3://l/out/")
    endpoint = requests.endpoint_request(model_data_url="m")
    assert transform["Model"] == endpoint["Model"] and transform["Model"] is not endpoint["Model"]
    transform["Model"]["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] = "other.py"
    assert endpoint["Model"]["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
