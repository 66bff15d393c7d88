"""Local runner for SageMaker hyperparameter tuning jobs: the same request, a real Bayesian search.

``Strategy: Bayesian`` runs Optuna's TPE sampler (``Random``: Optuna's random sampler) over the
request's ``ParameterRanges`` with their scaling types; each trial is a local training job built
from ``TrainingJobDefinition`` (static plus tuned hyperparameters, the objective metric parsed by
its MetricDefinitions), up to ``MaxParallelTrainingJobs`` at once, bounded by the cores. Trials are
named ``<tuning job>-<NNN>-<hash>`` like SageMaker's, and each gets its own checkpoint prefix.
A ``WarmStartConfig`` seeds the search with the parents' completed trials. The response has the
shape of DescribeHyperParameterTuningJob (``BestTrainingJob`` with its objective value and tuned
hyperparameters, status counters); ``trials.json`` beside it lists every trial like
ListTrainingJobsForHyperParameterTuningJob.

Not reproduced locally: ``TrainingJobEarlyStoppingType: Auto`` (SageMaker's median stopping rule);
each trial stops by its own ``early_stopping_rounds``. The request keeps the field for AWS.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import optuna

from churn_ml import naming
from local_aws.common import LocalJobError, arn, completed_job, control_plane, now, read_state, write_state
from local_aws.training import FRAMEWORK_PREFIX, check_request_paths, run_training_job

STRATEGIES = ("Bayesian", "Random")


def validate_request(request: dict) -> None:
    name = request.get("HyperParameterTuningJobName", "")
    if not 1 <= len(name) <= naming.TUNING_MAX_LEN:
        raise ValueError(f"HyperParameterTuningJobName must have 1-32 characters, got {name!r}")
    config = request.get("HyperParameterTuningJobConfig")
    if not config or "TrainingJobDefinition" not in request:
        raise ValueError("tuning request needs HyperParameterTuningJobConfig and TrainingJobDefinition")
    if config.get("Strategy") not in STRATEGIES:
        raise ValueError(f"Strategy {config.get('Strategy')!r}: the local target runs {STRATEGIES}")
    objective = config.get("HyperParameterTuningJobObjective", {})
    if objective.get("Type") not in ("Maximize", "Minimize") or not objective.get("MetricName"):
        raise ValueError("HyperParameterTuningJobObjective needs Type Maximize|Minimize and a MetricName")
    metrics = {d["Name"] for d in request["TrainingJobDefinition"]["AlgorithmSpecification"].get("MetricDefinitions", [])}
    if objective["MetricName"] not in metrics:
        raise ValueError(f"objective {objective['MetricName']!r} has no MetricDefinitions entry (have {sorted(metrics)})")
    limits = config.get("ResourceLimits", {})
    for key in ("MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs"):
        if not isinstance(limits.get(key), int) or limits[key] < 1:
            raise ValueError(f"ResourceLimits.{key} must be a positive integer, got {limits.get(key)!r}")
    ranges = distributions(config.get("ParameterRanges", {}))  # raises on a bad range
    framework = sorted(n for n in ranges if n.startswith(FRAMEWORK_PREFIX))
    if framework:
        raise ValueError(
            f"ParameterRanges tune {framework}: the framework's own hyperparameters ({FRAMEWORK_PREFIX}*: the "
            "program, the source bundle) are not tunable; set them in StaticHyperParameters"
        )
    # Each trial is a training job of this definition: its programs, paths and URIs are held to the same checks.
    definition = request["TrainingJobDefinition"]
    check_request_paths({**definition, "HyperParameters": definition.get("StaticHyperParameters") or {}})


def distributions(ranges: dict) -> dict[str, optuna.distributions.BaseDistribution]:
    """ParameterRanges (values are strings in the API) -> Optuna distributions."""
    result: dict[str, optuna.distributions.BaseDistribution] = {}
    kinds = (("IntegerParameterRanges", int), ("ContinuousParameterRanges", float))
    for key, cast in kinds:
        for item in ranges.get(key, []):
            scaling = item.get("ScalingType", "Auto")
            if scaling not in ("Auto", "Linear", "Logarithmic"):
                raise ValueError(f"{item['Name']}: ScalingType {scaling} is not supported locally (Auto, Linear, Logarithmic)")
            low, high = cast(item["MinValue"]), cast(item["MaxValue"])
            if not low < high or (scaling == "Logarithmic" and low <= 0):
                raise ValueError(f"{item['Name']}: range [{low}, {high}] is empty or not positive for Logarithmic")
            log_scale = scaling == "Logarithmic"
            if cast is int:
                result[item["Name"]] = optuna.distributions.IntDistribution(low, high, log=log_scale)
            else:
                result[item["Name"]] = optuna.distributions.FloatDistribution(low, high, log=log_scale)
    for item in ranges.get("CategoricalParameterRanges", []):
        result[item["Name"]] = optuna.distributions.CategoricalDistribution(item["Values"])
    if not result:
        raise ValueError("ParameterRanges is empty: nothing to tune")
    return result


def _sampler(strategy: str, seed: int) -> optuna.samplers.BaseSampler:
    if strategy == "Bayesian":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _format(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _parse(value: str, dist: optuna.distributions.BaseDistribution) -> object:
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(value)
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return float(value)
    return value


class _TrialLog(logging.LoggerAdapter):
    """Prefixes a trial's lines with its training job name (trials run in parallel)."""

    def process(self, msg, kwargs):
        return f"[{self.extra['trial']}] {msg}", kwargs


def _warm_start(study: optuna.Study, request: dict, dists: dict, log: logging.Logger) -> int:
    """Add the parents' completed trials (within today's ranges) to the study; returns how many."""
    added = 0
    for parent in request.get("WarmStartConfig", {}).get("ParentHyperParameterTuningJobs", []):
        parent_name = parent["HyperParameterTuningJobName"]
        trials = read_state(control_plane("sagemaker", "tuning-jobs", parent_name) / "trials.json")
        if trials is None:
            raise LocalJobError(f"warm start parent tuning job {parent_name} does not exist on the local target")
        for summary in trials["TrainingJobSummaries"]:
            objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
            if summary["TrainingJobStatus"] != "Completed" or objective is None:
                continue
            try:
                params = {k: _parse(summary["TunedHyperParameters"][k], d) for k, d in dists.items()}
                study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=objective["Value"]))
                added += 1
            except (KeyError, ValueError) as err:
                log.info("warm start: trial %s not usable with today's ranges (%s)", summary["TrainingJobName"], err)
    return added


def run_tuning_job(request: dict, log: logging.Logger) -> dict:
    validate_request(request)
    name = naming.check_name(request.get("HyperParameterTuningJobName"), "sagemaker", "CreateHyperParameterTuningJob",
                             "HyperParameterTuningJobName")
    job_dir, previous = completed_job("tuning-jobs", name, "HyperParameterTuningJobStatus", log)
    if previous:
        return previous
    state_file = job_dir / "describe.json"

    config = request["HyperParameterTuningJobConfig"]
    definition = request["TrainingJobDefinition"]
    objective = config["HyperParameterTuningJobObjective"]
    limits = config["ResourceLimits"]
    dists = distributions(config["ParameterRanges"])
    cores = os.cpu_count() or 1
    parallel = max(1, min(limits["MaxParallelTrainingJobs"], cores))
    threads = str(max(1, cores // parallel))
    seed = int(naming.content_hash(name), 16) % (2**31)
    study = optuna.create_study(
        direction="maximize" if objective["Type"] == "Maximize" else "minimize", sampler=_sampler(config["Strategy"], seed)
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warm = _warm_start(study, request, dists, log)
    describe = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": arn("sagemaker", "hyper-parameter-tuning-job", name.lower()),
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "HyperParameterTuningJobStatus": "InProgress",
        "CreationTime": now(),
        "TrainingJobStatusCounters": {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0},
        "ObjectiveStatusCounters": {"Succeeded": 0, "Pending": 0, "Failed": 0},
    }
    if "WarmStartConfig" in request:
        describe["WarmStartConfig"] = request["WarmStartConfig"]
    write_state(state_file, describe)
    log.info(
        "tuning job %s: %s search, %d trials, %d in parallel (%s threads each), %d warm-start trials; "
        "TrainingJobEarlyStoppingType=%s applies on AWS only",
        name, config["Strategy"], limits["MaxNumberOfTrainingJobs"], parallel, threads, warm,
        config.get("TrainingJobEarlyStoppingType", "Off"),
    )

    summaries: list[dict] = []

    def run_trial(number: int, params: dict) -> dict:
        tuned = {k: _format(v) for k, v in params.items()}
        trial_name = f"{name}-{number:03d}-{naming.content_hash(tuned)}"
        trial = {k: v for k, v in definition.items() if k not in ("StaticHyperParameters", "DefinitionName")}
        trial.update(
            TrainingJobName=trial_name,
            TuningJobArn=describe["HyperParameterTuningJobArn"],
            HyperParameters={
                **definition.get("StaticHyperParameters", {}), **tuned, "nthread": threads,
                "_tuning_objective_metric": objective["MetricName"],
            },
        )
        if "CheckpointConfig" in trial:
            trial["CheckpointConfig"] = {**trial["CheckpointConfig"],
                                         "S3Uri": f"{trial['CheckpointConfig']['S3Uri'].rstrip('/')}/{trial_name}/"}
        summary = {"TrainingJobName": trial_name, "TunedHyperParameters": tuned, "CreationTime": now()}
        trial_log = _TrialLog(log, {"trial": trial_name})
        try:
            result = run_training_job(trial, trial_log, interruptions="")  # type: ignore[arg-type]
        except LocalJobError as err:
            summary.update(TrainingJobStatus="Failed", FailureReason=str(err).splitlines()[0], ObjectiveStatus="Failed")
            return summary
        metrics = {m["MetricName"]: m["Value"] for m in result.get("FinalMetricDataList", [])}
        summary.update(TrainingJobArn=result["TrainingJobArn"], TrainingJobStatus="Completed",
                       TrainingEndTime=result["TrainingEndTime"])
        if objective["MetricName"] in metrics:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective["Type"], "MetricName": objective["MetricName"], "Value": metrics[objective["MetricName"]],
            }
            summary["ObjectiveStatus"] = "Succeeded"
        else:
            summary["ObjectiveStatus"] = "Failed"
            summary["FailureReason"] = f"the job reported no {objective['MetricName']}"
        return summary

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        running: dict[Future, optuna.trial.Trial] = {}
        launched = 0
        while launched < limits["MaxNumberOfTrainingJobs"] or running:
            while launched < limits["MaxNumberOfTrainingJobs"] and len(running) < parallel:
                trial = study.ask(dists)
                launched += 1
                running[pool.submit(run_trial, launched, trial.params)] = trial
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                summary = future.result()
                summaries.append(summary)
                counters = describe["TrainingJobStatusCounters"]
                counters["Completed" if summary["TrainingJobStatus"] == "Completed" else "NonRetryableError"] += 1
                describe["ObjectiveStatusCounters"][summary["ObjectiveStatus"]] += 1
                value = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
                if value is None or math.isnan(value):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    log.warning("trial %s failed: %s", summary["TrainingJobName"], summary.get("FailureReason"))
                else:
                    study.tell(trial, value)
                    log.info("trial %s: %s = %.6f %s", summary["TrainingJobName"], objective["MetricName"], value,
                             summary["TunedHyperParameters"])
                write_state(job_dir / "trials.json", {"TrainingJobSummaries": summaries})
                write_state(state_file, describe)

    succeeded = [s for s in summaries if s["ObjectiveStatus"] == "Succeeded"]
    describe["HyperParameterTuningEndTime"] = now()
    if not succeeded:
        reasons = sorted({s.get("FailureReason", "") for s in summaries})
        describe.update(HyperParameterTuningJobStatus="Failed", FailureReason=f"no training job succeeded: {reasons}")
        write_state(state_file, describe)
        raise LocalJobError(f"tuning job {name} failed: {describe['FailureReason']}")
    pick = max if objective["Type"] == "Maximize" else min
    best = pick(succeeded, key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    describe.update(HyperParameterTuningJobStatus="Completed", BestTrainingJob=best)
    write_state(state_file, describe)
    log.info("tuning job %s completed: best %s = %.6f (%s)", name, objective["MetricName"],
             best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], best["TrainingJobName"])
    return describe
