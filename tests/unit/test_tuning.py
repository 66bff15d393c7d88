"""The local tuning runner: ranges and scaling, a real search, the best job, warm start, errors."""

from __future__ import annotations

import logging

import numpy as np
import optuna
import pytest
from test_runners import _training_request, _write_channel

from local_aws.common import LocalJobError
from local_aws.tuning import distributions, run_tuning_job

LOG = logging.getLogger("test")
RANGES = {
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "5", "ScalingType": "Linear"}],
    "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.05", "MaxValue": "0.5", "ScalingType": "Logarithmic"}],
}


def _tuning_request(name: str, jobs: int = 4, **extra) -> dict:
    trial = _training_request()
    definition = {k: v for k, v in trial.items() if k not in ("TrainingJobName", "HyperParameters")}
    definition["StaticHyperParameters"] = {k: v for k, v in trial["HyperParameters"].items() if k != "max_depth"}
    definition["InputDataConfig"] = [c for c in definition["InputDataConfig"] if c["ChannelName"] != "holdout"]
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": RANGES,
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": definition,
        **extra,
    }


def test_ranges_become_distributions_with_their_scaling():
    dists = distributions(RANGES)
    assert dists["max_depth"] == optuna.distributions.IntDistribution(2, 5)
    assert dists["eta"] == optuna.distributions.FloatDistribution(0.05, 0.5, log=True)
    with pytest.raises(ValueError, match="empty or not positive"):
        distributions({"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1", "ScalingType": "Logarithmic"}]})
    with pytest.raises(ValueError, match="ReverseLogarithmic is not supported"):
        distributions({"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0.1", "MaxValue": "0.9", "ScalingType": "ReverseLogarithmic"}]})


def test_tuning_runs_trials_names_the_best_and_warm_starts(lake_root):
    rng = np.random.default_rng(0)
    for name in ("train", "validation", "holdout"):
        _write_channel(lake_root, name, rng)
    result = run_tuning_job(_tuning_request("hpo-a"), LOG)
    assert result["HyperParameterTuningJobStatus"] == "Completed"
    assert result["TrainingJobStatusCounters"]["Completed"] == 4
    import json

    trials = json.loads((lake_root / ".control-plane/sagemaker/tuning-jobs/hpo-a/trials.json").read_text())
    values = [t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for t in trials["TrainingJobSummaries"]]
    best = result["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == max(values)
    assert best["TrainingJobName"].startswith("hpo-a-") and set(best["TunedHyperParameters"]) == {"max_depth", "eta"}
    assert 2 <= int(best["TunedHyperParameters"]["max_depth"]) <= 5

    warm = {"WarmStartConfig": {"WarmStartType": "TransferLearning",
                                "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "hpo-a"}]}}
    child = run_tuning_job(_tuning_request("hpo-b", jobs=2, **warm), LOG)
    assert child["HyperParameterTuningJobStatus"] == "Completed" and child["WarmStartConfig"] == warm["WarmStartConfig"]
    missing = {"WarmStartConfig": {**warm["WarmStartConfig"], "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "nope"}]}}
    with pytest.raises(LocalJobError, match="warm start parent tuning job nope does not exist"):
        run_tuning_job(_tuning_request("hpo-c", jobs=2, **missing), LOG)


def test_tuning_request_checks(lake_root):
    with pytest.raises(ValueError, match="1-32 characters"):
        run_tuning_job(_tuning_request("x" * 33), LOG)
    bad = _tuning_request("hpo-d")
    bad["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = "validation:f1"
    with pytest.raises(ValueError, match="no MetricDefinitions entry"):
        run_tuning_job(bad, LOG)
