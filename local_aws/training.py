"""Local runner for SageMaker training jobs (script mode), with the container's contract.

From a CreateTrainingJob request it lays out an ``/opt/ml``-shaped folder (``input/config/*.json``,
``input/data/<channel>/`` copied from the lake, ``model/``, ``output/``), and applies the framework
container's training contract (``local_aws.training_toolkit``: hyperparameters JSON-decoded value by
value, as the SDK encodes them): unpacks the ``sagemaker_submit_directory`` bundle into ``code/``,
runs ``sagemaker_program`` (a file at the bundle's root; ``check_request_paths`` and
``local_aws.sandbox`` hold it and ``CheckpointConfig.LocalPath`` inside the bundle and the sandbox)
as ``python -m <module>`` with the other hyperparameters as the toolkit's ``--name value`` arguments
and its ``SM_*`` environment, parses the metrics with the request's MetricDefinitions, packs
``model.tar.gz`` / ``output.tar.gz`` to ``<S3OutputPath>/<job>/output/`` and returns a
DescribeTrainingJob-shaped response.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from churn_ml import naming
from local_aws import lake_files, sandbox, training_toolkit
from local_aws import settings as local_settings
from local_aws.common import (
    LocalJobError,
    arn,
    completed_job,
    now,
    python,
    read_state,
    stream,
    tail,
    write_state,
)

CHECKPOINTS = "/opt/ml/checkpoints"  # CheckpointConfig.LocalPath's default
REQUIRED = ("TrainingJobName", "AlgorithmSpecification", "RoleArn", "OutputDataConfig", "ResourceConfig", "StoppingCondition")
FRAMEWORK_PREFIX = training_toolkit.SAGEMAKER_PREFIX


def validate_request(request: dict) -> None:
    """The checks CreateTrainingJob would do on what this runner relies on; fail before any work."""
    missing = [k for k in REQUIRED if k not in request]
    if missing:
        raise ValueError(f"training request is missing {missing}; see the CreateTrainingJob API")
    hps = request.get("HyperParameters", {})
    not_str = {k: type(v).__name__ for k, v in hps.items() if not isinstance(v, str)}
    if not_str:
        raise ValueError(f"HyperParameters values must be strings (the API takes a map of strings): {not_str}")
    for key in ("sagemaker_program", "sagemaker_submit_directory"):
        if key not in hps:
            raise ValueError(f"script mode needs the hyperparameter {key!r}")
    stopping = request["StoppingCondition"]
    if not isinstance(stopping.get("MaxRuntimeInSeconds"), int):
        raise ValueError("StoppingCondition.MaxRuntimeInSeconds must be an integer")
    if request.get("EnableManagedSpotTraining"):
        wait = stopping.get("MaxWaitTimeInSeconds")
        if not isinstance(wait, int) or wait < stopping["MaxRuntimeInSeconds"]:
            raise ValueError(
                "managed spot training needs StoppingCondition.MaxWaitTimeInSeconds as an integer >= "
                f"MaxRuntimeInSeconds ({stopping['MaxRuntimeInSeconds']}), got {wait!r}"
            )
    check_request_paths(request)
    for channel in request.get("InputDataConfig", []):
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        if source.get("S3DataType") != "S3Prefix":
            raise ValueError(f"channel {channel.get('ChannelName')}: only S3DataType S3Prefix is supported locally")


def check_request_paths(request: dict) -> None:
    """What of a training request becomes a path here, checked on its text before anything runs.

    ``sagemaker_program`` is a ``.py`` path inside the source bundle (``sandbox.check_program``),
    ``CheckpointConfig.LocalPath`` a folder of its own in the ``/opt/ml`` sandbox, channel names one
    folder each, and every S3 URI (bundle, channels, output, checkpoints) one the lake can hold.
    The values are read as the container reads them (``training_toolkit.decode_hyperparameters``: the
    SDK's ``'"churn_train.py"'`` is ``churn_train.py``). The tuning runner applies it to its
    TrainingJobDefinition too."""
    hps = training_toolkit.decode_hyperparameters(request.get("HyperParameters") or {})
    if "sagemaker_program" in hps:
        program = training_toolkit.check_program(hps["sagemaker_program"])
        sandbox.check_program(program, "HyperParameters.sagemaker_program")
    if "sagemaker_submit_directory" in hps:
        sandbox.check_lake_uri(hps["sagemaker_submit_directory"], "HyperParameters.sagemaker_submit_directory")
    checkpoint = request.get("CheckpointConfig")
    if checkpoint is not None:
        sandbox.check_lake_uri(checkpoint.get("S3Uri"), "CheckpointConfig.S3Uri")
        sandbox.check_container_path(checkpoint.get("LocalPath", CHECKPOINTS), "CheckpointConfig.LocalPath", CHECKPOINTS)
    names = []
    for channel in request.get("InputDataConfig") or []:
        names.append(sandbox.check_channel_name(channel.get("ChannelName")))
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        sandbox.check_lake_uri(source.get("S3Uri"), f"channel {names[-1]}: S3DataSource.S3Uri")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"InputDataConfig names the channel(s) {repeated} more than once: each channel needs a name of its own")
    output = request.get("OutputDataConfig")
    if isinstance(output, dict):
        sandbox.check_lake_uri(output.get("S3OutputPath"), "OutputDataConfig.S3OutputPath")


def _copy_prefix(uri: str, dest: Path) -> int:
    """Copy every object under an S3 prefix into ``dest``, keeping the key below the prefix."""
    source = lake_files.local_path(uri)
    if not source.exists():
        raise LocalJobError(f"input channel {uri} has no objects (local path {source})")
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copy2(source, dest / source.name)
        return 1
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count


def _pack(folder: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix())
    tmp.replace(archive)


@dataclass
class Interruption:
    round: int
    kill: bool = False  # SIGKILL without notice (the instance vanished) instead of SIGTERM first


def interruption_plan(spec: str, job_name: str, num_round: int) -> list[Interruption]:
    """``"40,random,90:kill"`` -> interruptions in round order; ``random`` is drawn per job name."""
    plan = []
    rng = random.Random(job_name)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        at, _, mode = item.partition(":")
        if mode not in ("", "kill"):
            raise ValueError(f"spot interruption {item!r}: expected <round>, random or <round>:kill")
        if at == "random":
            round_ = rng.randint(1, max(2, num_round // 2))
        elif at.isdigit() and int(at) > 0:
            round_ = int(at)
        else:
            raise ValueError(f"spot interruption {item!r}: the round must be a positive integer or 'random'")
        plan.append(Interruption(round_, mode == "kill"))
    return sorted(plan, key=lambda i: i.round)


class Interrupter:
    """Watches the job's ``[round]`` metric lines and interrupts it once the planned round is reached."""

    _ROUND = re.compile(r"^\[(\d+)\]\t")

    def __init__(self, planned: Interruption | None, notice_seconds: float, log: logging.Logger) -> None:
        self.planned = planned
        self.notice_seconds = notice_seconds
        self.log = log
        self.sent = False
        self.round = -1
        self._timer: threading.Timer | None = None

    def on_line(self, line: str, proc: subprocess.Popen) -> None:
        match = self._ROUND.match(line)
        if self.planned is None or self.sent or not match or int(match.group(1)) < self.planned.round:
            return
        self.sent, self.round = True, int(match.group(1))
        if self.planned.kill:
            self.log.warning("spot interruption: SIGKILL at round %d (no notice)", self.round)
            proc.kill()
            return
        self.log.warning("spot interruption: SIGTERM at round %d, SIGKILL in %.0f s", self.round, self.notice_seconds)
        proc.send_signal(signal.SIGTERM)
        self._timer = threading.Timer(self.notice_seconds, proc.kill)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def sync_checkpoints_down(uri: str, folder: Path) -> int:
    """A new instance: empty local folder, then a copy of what S3 holds (as SageMaker does at start)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = lake_files.local_path(uri)
    return _copy_prefix(uri, folder) if source.exists() else 0


def sync_checkpoints_up(folder: Path, uri: str) -> None:
    """Mirror the local checkpoint folder to S3 (new and changed files up, deleted files removed)."""
    target = lake_files.local_path(uri)
    target.mkdir(parents=True, exist_ok=True)
    local = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    for path in [p for p in target.rglob("*") if p.is_file()]:
        if path.relative_to(target) not in local:
            path.unlink()
    for rel in local:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.sync")
        shutil.copy2(folder / rel, tmp)
        tmp.replace(dest)


def parse_metrics(lines: list[str], definitions: list[dict]) -> list[dict]:
    """Last value of each MetricDefinitions regex in the job output, as in FinalMetricDataList."""
    final = []
    for definition in definitions:
        pattern = re.compile(definition["Regex"])
        value = None
        for line in lines:
            for match in pattern.finditer(line):
                try:
                    value = float(match.group(1))
                except (IndexError, ValueError):
                    continue
        if value is not None:
            final.append({"MetricName": definition["Name"], "Value": value, "Timestamp": now()})
    return final


TERMINAL = ("Completed", "Failed", "Stopped")
FAILURE_REASON_MAX = 1024  # the API's limit on FailureReason


class JobRecord:
    """The DescribeTrainingJob record of one job name (``describe.json``), written at every transition.

    ``SecondaryStatusTransitions`` keeps the job's whole history, as SageMaker's does: Starting,
    Downloading, Training, Interrupted / Restarting (spot), Uploading, then Completed, Failed,
    Stopped, MaxRuntimeExceeded or MaxWaitTimeExceeded; each with StartTime, EndTime (the end ones
    too, when the job ended) and StatusMessage. The local target, unlike SageMaker, lets a job
    name that did not complete run again (the operator retries under the same name there), so a
    rerun appends to the transitions of the earlier runs instead of replacing them: the earlier
    run's failure stays visible in its transition's StatusMessage. The other fields (times,
    metrics, FailureReason) describe the latest run; CreationTime stays the first run's.

    The billed time is SageMaker's: ``TrainingTimeInSeconds`` is TrainingStartTime to TrainingEndTime
    (the end after the model's upload, as SageMaker's is), ``BillableTimeInSeconds`` that time less the
    waits for spot capacity after an interruption (``wait_for_capacity``): what ran on the instances,
    interrupted attempts included, is billed, as SageMaker bills it; on-demand, the two are equal. A run
    that ended before its instances were up (before Downloading) reports neither, as SageMaker bills it nothing.
    """

    def __init__(self, state_file: Path, fields: dict) -> None:
        self.state_file = state_file
        earlier = read_state(state_file)
        history = [dict(t) for t in (earlier or {}).get("SecondaryStatusTransitions", [])]
        self.rerun = earlier is not None
        if earlier is not None and history and "EndTime" not in history[-1]:
            # The earlier run's runner died without recording an end (a killed task): say so.
            stamp = now()
            history[-1]["EndTime"] = stamp
            history.append({
                "Status": "Stopped", "StartTime": stamp, "EndTime": stamp,
                "StatusMessage": f"The local runner of the previous run ended while the job was "
                                 f"{earlier.get('SecondaryStatus', 'in progress')}; it did not finish",
            })
        self.describe: dict = {
            **fields,
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "SecondaryStatusTransitions": history,
            "CreationTime": (earlier or {}).get("CreationTime") or now(),
            "TrainingStartTime": now(),
        }
        self.started = time.monotonic()  # TrainingStartTime, for the durations
        self.waited = 0.0  # seconds waiting for spot capacity: not billed
        self.instances_up = False
        self.ended = False

    @property
    def runs(self) -> int:
        """How many runs of this job name have started so far (one ``Starting`` transition each)."""
        return sum(1 for t in self.describe["SecondaryStatusTransitions"] if t["Status"] == "Starting")

    def transition(self, status: str, message: str, *, final: bool = False) -> None:
        """Enter secondary status ``status`` (closing the current one) and save the record."""
        stamp = now()
        self.instances_up = self.instances_up or status == "Downloading"
        history = self.describe["SecondaryStatusTransitions"]
        if history and "EndTime" not in history[-1]:
            history[-1]["EndTime"] = stamp
        entry = {"Status": status, "StartTime": stamp, "StatusMessage": message}
        if final:
            entry["EndTime"] = stamp
        history.append(entry)
        self.describe.update(SecondaryStatus=status, LastModifiedTime=stamp)
        write_state(self.state_file, self.describe)

    def wait_for_capacity(self, seconds: float) -> None:
        """Wait ``seconds`` for spot capacity after an interruption (time SageMaker does not bill)."""
        began = time.monotonic()
        time.sleep(seconds)
        self.waited += time.monotonic() - began

    def end(self, status: str, secondary: str, message: str) -> None:
        """End the run: ``TrainingJobStatus`` ``status``; the reason of a run that did not complete
        goes to FailureReason and to the last transition's StatusMessage."""
        if status not in TERMINAL:
            raise ValueError(f"{status!r} is not a terminal TrainingJobStatus ({', '.join(TERMINAL)})")
        self.describe["TrainingEndTime"] = now()
        if self.instances_up:
            elapsed = time.monotonic() - self.started
            self.describe["TrainingTimeInSeconds"] = max(1, round(elapsed))
            self.describe["BillableTimeInSeconds"] = max(1, round(elapsed - self.waited))
        self.describe["TrainingJobStatus"] = status
        if status != "Completed":
            self.describe["FailureReason"] = message[:FAILURE_REASON_MAX]
        self.ended = True
        self.transition(secondary, message, final=True)


def run_training_job(request: dict, log: logging.Logger, interruptions: str | None = None) -> dict:
    """Run a CreateTrainingJob request to completion; returns the DescribeTrainingJob response.

    With ``EnableManagedSpotTraining`` the job can be interrupted as spot capacity is (see
    ``interruption_plan``; ``interruptions`` overrides CHURN_LOCAL_SPOT_INTERRUPTIONS): SIGTERM, then
    SIGKILL after the notice, checkpoints synced to ``CheckpointConfig.S3Uri``, and a restart that
    resumes from them. ``TrainingTimeInSeconds`` counts the whole job including the waits for spot
    capacity, ``BillableTimeInSeconds`` the job without them (``JobRecord``).

    The job's Describe record is kept in the control plane (see ``JobRecord``); a job name that
    already completed is re-attached to, one that did not is run again and its record extended.
    Whatever ends the run (a failure of the job, an error of the runner, the task being stopped),
    the record says so before the error propagates.
    """
    validate_request(request)
    name = naming.check_name(request.get("TrainingJobName"), "sagemaker", "CreateTrainingJob", "TrainingJobName")
    job_dir, previous = completed_job("training-jobs", name, "TrainingJobStatus", log)
    if previous:
        return previous
    spot = bool(request.get("EnableManagedSpotTraining"))
    fields = {
        "TrainingJobName": name,
        "TrainingJobArn": arn("sagemaker", "training-job", name.lower()),
        "HyperParameters": request.get("HyperParameters", {}),
        "AlgorithmSpecification": request["AlgorithmSpecification"],
        "RoleArn": request["RoleArn"],
        "InputDataConfig": request.get("InputDataConfig", []),
        "OutputDataConfig": request["OutputDataConfig"],
        "ResourceConfig": request["ResourceConfig"],
        "StoppingCondition": request["StoppingCondition"],
        "EnableManagedSpotTraining": spot,
        **{k: request[k] for k in ("CheckpointConfig", "TuningJobArn") if k in request},
    }
    record = JobRecord(job_dir / "describe.json", fields)
    if record.rerun:
        log.info("training job %s did not complete before: running it again (its record keeps the earlier runs)", name)
    try:
        return _run(request, record, job_dir, log, interruptions)
    except BaseException as err:
        if not record.ended:
            if isinstance(err, Exception):
                record.end("Failed", "Failed", f"InternalServerError: the local runner failed: {type(err).__name__}: {err}")
            else:  # KeyboardInterrupt, SystemExit, the task being terminated
                record.end("Stopped", "Stopped", f"Stopped: the local runner was stopped ({type(err).__name__})")
        raise


def _run(request: dict, record: JobRecord, job_dir: Path, log: logging.Logger, interruptions: str | None) -> dict:
    """The body of ``run_training_job``: sandbox, inputs, training attempts, outputs."""
    name = request["TrainingJobName"]
    describe = record.describe
    record.transition(
        "Starting", "Starting the training job" + (f" (run {record.runs + 1} of this job name)" if record.rerun else ""),
    )
    hps = request.get("HyperParameters", {})
    opt_ml = job_dir / "opt_ml"
    for sub in ("input", "model", "output", "code", "checkpoints"):
        shutil.rmtree(opt_ml / sub, ignore_errors=True)
    config_dir, data_dir = opt_ml / "input" / "config", opt_ml / "input" / "data"
    model_dir, output_dir = opt_ml / "model", opt_ml / "output"
    code_dir = opt_ml / "code"
    for folder in (config_dir, data_dir, model_dir, output_dir / "data", code_dir):
        folder.mkdir(parents=True, exist_ok=True)

    framework, user_hps = training_toolkit.split_hyperparameters(training_toolkit.decode_hyperparameters(hps))
    submit_dir = framework["sagemaker_submit_directory"]
    bundle = lake_files.local_path(submit_dir)
    if not bundle.exists():
        raise _fail(record, f"ClientError: sagemaker_submit_directory {submit_dir} not found ({bundle})")
    with tarfile.open(bundle) as tar:
        tar.extractall(code_dir, filter="data")
    program = framework["sagemaker_program"]
    try:
        sandbox.program_path(code_dir, program, "sagemaker_program")
    except ValueError as err:
        raise _fail(record, f"ClientError: {err}") from None

    record.transition("Downloading", "Downloading input data")
    for channel in request.get("InputDataConfig", []):
        cname = channel["ChannelName"]
        try:
            count = _copy_prefix(channel["DataSource"]["S3DataSource"]["S3Uri"], data_dir / cname)
        except LocalJobError as err:
            raise _fail(record, f"ClientError: {err}") from None
        log.info("channel %s: %d objects", cname, count)
    inputs = training_toolkit.input_data_config(request)
    resources = training_toolkit.resource_config(request)
    (config_dir / "hyperparameters.json").write_text(json.dumps(hps))
    (config_dir / "resourceconfig.json").write_text(json.dumps(resources))
    (config_dir / "inputdataconfig.json").write_text(json.dumps(inputs))

    env = {
        **os.environ,
        **training_toolkit.training_env(opt_ml, hps, inputs, resources, name),
        "SM_FAILURE_FILE": str(output_dir / "failure"),
        "PYTHONPATH": str(code_dir),
        "PYTHONUNBUFFERED": "1",
    }
    checkpoint = request.get("CheckpointConfig")
    local_checkpoints = None
    if checkpoint:
        try:
            local_checkpoints = sandbox.container_path(
                opt_ml, checkpoint.get("LocalPath", CHECKPOINTS), "CheckpointConfig.LocalPath", CHECKPOINTS,
            )
        except ValueError as err:
            raise _fail(record, f"ClientError: {err}") from None
        env["SM_CHECKPOINT_DIR"] = str(local_checkpoints)
        (config_dir / "checkpointconfig.json").write_text(
            json.dumps({"LocalPath": checkpoint.get("LocalPath", CHECKPOINTS), "S3Uri": checkpoint["S3Uri"]}))
    # As _modules.run: the bundle's module by name, its cwd the bundle (first on sys.path for -m).
    argv = [python(), "-m", training_toolkit.module_name(program), *training_toolkit.to_cmd_args(user_hps)]

    spot = describe["EnableManagedSpotTraining"]
    plan = interruption_plan(
        local_settings.spot_interruptions() if interruptions is None else interruptions, name,
        int(user_hps.get("num_round", 100)),
    ) if spot else []
    stopping = request["StoppingCondition"]
    max_runtime = stopping["MaxRuntimeInSeconds"]
    max_wait = stopping.get("MaxWaitTimeInSeconds") if spot else None
    log_file = job_dir / "training.log"
    started = time.monotonic()
    ran = 0.0  # seconds the training process ran, which MaxRuntimeInSeconds limits
    interrupted = 0
    lines: list[str] = []
    reason, secondary = "", "Failed"
    attempt = 0
    while True:
        attempt += 1
        if local_checkpoints is not None:
            restored = sync_checkpoints_down(checkpoint["S3Uri"], local_checkpoints)
            if restored:
                log.info("restored %d checkpoint file(s) from %s", restored, checkpoint["S3Uri"])
        record.transition(
            "Training", "Training in progress" + (f" (attempt {attempt}, resuming from checkpoints)" if attempt > 1 else ""),
        )
        interrupter = Interrupter(plan[0] if plan else None, local_settings.spot_notice_seconds(), log)
        attempt_started = time.monotonic()
        try:
            # A rerun of the job name appends too: the log keeps every run, as the transitions do.
            code, attempt_lines = stream(
                argv, env=env, log=log, log_file=log_file, timeout=max(1.0, max_runtime - ran),
                cwd=code_dir, on_line=interrupter.on_line, append=attempt > 1 or record.rerun,
            )
        except subprocess.TimeoutExpired as err:
            code, attempt_lines = -9, (err.output or "").splitlines()
            reason, secondary = f"MaxRuntimeExceeded: MaxRuntimeInSeconds ({max_runtime}) exceeded", "MaxRuntimeExceeded"
        finally:
            interrupter.cancel()
            ran += time.monotonic() - attempt_started
            if local_checkpoints is not None:
                sync_checkpoints_up(local_checkpoints, checkpoint["S3Uri"])
        lines += attempt_lines
        if reason or not interrupter.sent:
            if plan and not interrupter.sent and code == 0:
                log.info("planned spot interruption at round %d not reached: the job finished first", plan[0].round)
            break
        plan.pop(0)
        interrupted += 1
        record.transition("Interrupted", f"Spot interruption {interrupted} at round {interrupter.round} (exit code {code})")
        log.warning("training job %s: simulated spot interruption %d at round %d", name, interrupted, interrupter.round)
        record.wait_for_capacity(local_settings.spot_restart_seconds())
        if max_wait is not None and time.monotonic() - started > max_wait:
            reason = f"MaxWaitTimeExceeded: MaxWaitTimeInSeconds ({max_wait}) passed while waiting for spot capacity"
            secondary = "MaxWaitTimeExceeded"
            break
        record.transition("Restarting", "Restarting the job on new spot capacity")
    if not reason:
        failure = (output_dir / "failure").read_text().strip() if (output_dir / "failure").exists() else ""
        reason = failure or (f"AlgorithmError: {program} exited with {code}" if code else "")
    describe["FinalMetricDataList"] = parse_metrics(lines, request["AlgorithmSpecification"].get("MetricDefinitions", []))
    if reason:
        # SageMaker reports a job stopped by its time limits as Stopped, any other end as Failed.
        record.end("Failed" if secondary == "Failed" else "Stopped", secondary, reason)
        raise LocalJobError(f"training job {name} failed: {reason}\nLast lines:\n{tail(lines)}\nFull log: {log_file}")
    record.transition("Uploading", "Uploading generated training model")
    output_uri = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output"
    _pack(model_dir, lake_files.local_path(f"{output_uri}/model.tar.gz"))
    _pack(output_dir / "data", lake_files.local_path(f"{output_uri}/output.tar.gz"))
    describe.update(
        ModelArtifacts={"S3ModelArtifacts": f"{output_uri}/model.tar.gz"},
        OutputDataConfig={**request["OutputDataConfig"], "OutputTarUri": f"{output_uri}/output.tar.gz"},
    )
    record.end("Completed", "Completed", "Training job completed" + (f" after {interrupted} spot interruption(s)" if interrupted else ""))
    return describe


def _fail(record: JobRecord, reason: str) -> LocalJobError:
    """Record the run as Failed with ``reason`` and return the error for the caller to raise."""
    record.end("Failed", "Failed", reason)
    return LocalJobError(f"training job {record.describe['TrainingJobName']} failed: {reason}")
