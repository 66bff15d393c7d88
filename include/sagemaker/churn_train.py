"""SageMaker script-mode entry point: train the churn XGBoost model and evaluate it on the holdout.

Runs unchanged in the SageMaker XGBoost framework container and in the local runner, which
reproduces the training contract (``SM_*`` variables, an ``/opt/ml``-shaped directory, channels
as folders of CSV files). Channels: ``train`` and ``validation`` (required), ``holdout``
(optional; never used for fitting or early stopping) and ``champion`` (optional: the current
approved model, scored on the same holdout for the quality gate). CSV files have a header: the
label ``churned_30d`` first, then the features.

Managed spot: checkpoints go to ``CheckpointConfig.LocalPath`` every ``checkpoint_every`` rounds
(see churn_checkpoints.py); on start the newest one is resumed and only the remaining rounds train; on
SIGTERM the current interval is finished (when it fits SageMaker's 120 s notice), saved, and the
process exits 143 for SageMaker to restart it.

Metrics are printed one per line as ``<name>: <value>`` (and XGBoost's own
``[i]\\tvalidation-auc:...`` lines), the form the MetricDefinitions of the training request parse.
The model goes to ``SM_MODEL_DIR/xgboost-model.json`` and the holdout evaluation next to it as
``evaluation.json``. With a holdout, the output (``SM_OUTPUT_DATA_DIR``, packed as ``output.tar.gz``)
also gets the model card plot and ``baseline.json``, the monitoring baseline (churn_baseline.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

import churn_baseline
import churn_evaluation
from churn_checkpoints import DEFAULT_DIR as CHECKPOINT_DIR
from churn_checkpoints import CheckpointStore, TrainingState

MODEL_FILE_NAME = "xgboost-model.json"
EVALUATION_FILE_NAME = "evaluation.json"
CANARY_ROWS = 20
CARD_PLOT_NAME = "model_card.png"
INTERRUPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a process killed by SIGTERM reports
LABEL = "churned_30d"
FAILURE_FILE = "/opt/ml/output/failure"

log = logging.getLogger("train")


class TrainingInputError(ValueError):
    """Input data or hyperparameters that cannot be trained on; the message says what to fix."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="churn XGBoost training")
    # Hyperparameters (SageMaker passes them as --name value).
    parser.add_argument("--num_round", type=int, default=300)
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--subsample", type=float, default=0.8)
    parser.add_argument("--colsample_bytree", type=float, default=0.8)
    parser.add_argument("--min_child_weight", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.0)
    parser.add_argument("--reg_lambda", type=float, default=1.0)
    parser.add_argument("--reg_alpha", type=float, default=0.0)
    parser.add_argument("--early_stopping_rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--nthread", type=int, default=int(env("SM_NUM_CPUS", "0")) or None)
    parser.add_argument("--checkpoint_every", type=int, default=50, help="rounds between checkpoints")
    parser.add_argument("--log_every", type=int, default=10, help="rounds between validation metric lines")
    # SageMaker paths.
    parser.add_argument("--model-dir", default=env("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--output-data-dir", default=env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    parser.add_argument("--train", default=env("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=env("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--holdout", default=env("SM_CHANNEL_HOLDOUT"))
    parser.add_argument("--champion", default=env("SM_CHANNEL_CHAMPION"))
    # CheckpointConfig.LocalPath (SageMaker's default; the local runner points it elsewhere).
    parser.add_argument("--checkpoint-dir", default=env("SM_CHECKPOINT_DIR", CHECKPOINT_DIR))
    # Tuning jobs and framework containers add arguments of their own: keep going.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log.info("ignoring unknown arguments: %s", unknown)
    validate_hyperparameters(args)
    return args


def validate_hyperparameters(args: argparse.Namespace) -> None:
    problems = []
    if args.num_round < 1:
        problems.append(f"num_round must be >= 1, got {args.num_round}")
    if not 1 <= args.max_depth <= 20:
        problems.append(f"max_depth must be within [1, 20], got {args.max_depth}")
    if not 0 < args.eta <= 1:
        problems.append(f"eta must be within (0, 1], got {args.eta}")
    for name in ("subsample", "colsample_bytree"):
        if not 0 < getattr(args, name) <= 1:
            problems.append(f"{name} must be within (0, 1], got {getattr(args, name)}")
    for name in ("min_child_weight", "gamma", "reg_lambda", "reg_alpha"):
        if getattr(args, name) < 0:
            problems.append(f"{name} must be >= 0, got {getattr(args, name)}")
    for name in ("checkpoint_every", "log_every"):
        if getattr(args, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(args, name)}")
    if args.early_stopping_rounds < 0:
        problems.append(f"early_stopping_rounds must be >= 0 (0 turns it off), got {args.early_stopping_rounds}")
    if not args.train or not args.validation:
        problems.append("the train and validation channels are required (SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION)")
    if problems:
        raise TrainingInputError("invalid hyperparameters: " + "; ".join(problems))


def read_channel(path: str, name: str, feature_names: list[str] | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Read every CSV file of a channel folder; the label column comes first."""
    files = sorted(
        f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True)
        if os.path.isfile(f) and not os.path.basename(f).startswith(("_", "."))
    )
    if not files:
        raise TrainingInputError(f"channel '{name}' at {path} has no data files; expected CSV with a header")
    frame = pd.concat((pd.read_csv(f) for f in files), ignore_index=True)
    if frame.empty:
        raise TrainingInputError(f"channel '{name}' at {path} has a header but no rows")
    if frame.columns[0] != LABEL:
        raise TrainingInputError(
            f"channel '{name}': the first column must be the label '{LABEL}', found '{frame.columns[0]}'"
        )
    columns = list(frame.columns[1:])
    if feature_names is not None and columns != feature_names:
        raise TrainingInputError(
            f"channel '{name}' has features {columns}, but the train channel has {feature_names}; "
            "all channels must come from the same training set build"
        )
    labels = frame[LABEL]
    if not labels.isin([0, 1]).all():
        raise TrainingInputError(f"channel '{name}': label '{LABEL}' must be 0 or 1")
    return frame[columns].astype("float64"), labels.astype("int32")


def best_single_feature_auc(features: pd.DataFrame, labels: pd.Series) -> tuple[str, float]:
    """The best AUC any one raw feature reaches by itself (either direction): the baseline to beat."""
    best = ("", 0.5)
    for column in features.columns:
        values = features[column].to_numpy()
        if np.unique(values).size < 2:
            continue
        auc = float(roc_auc_score(labels, values))
        auc = max(auc, 1.0 - auc)
        if auc > best[1]:
            best = (column, auc)
    return best


class Interrupted(RuntimeError):
    """SIGTERM arrived (a spot interruption or a stop): the checkpoint is saved, the job exits."""


class Termination:
    """Records SIGTERM; the loop then finishes the current checkpoint interval if it can in time.

    Finishing the interval (instead of saving mid-interval) keeps an interrupted run on the same
    checkpoint boundaries as an uninterrupted one, so the resumed model is identical. SageMaker
    gives 120 s between SIGTERM and SIGKILL; the loop only continues when the rounds left fit in
    ``grace_seconds`` at the measured speed, and otherwise saves where it is.
    """

    def __init__(self, grace_seconds: float = 60.0) -> None:
        self.requested_at: float | None = None
        self.grace_seconds = grace_seconds

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            print("SIGTERM received: finishing the checkpoint interval, then exiting", flush=True)

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def can_finish(self, rounds_left: int, seconds_per_round: float) -> bool:
        assert self.requested_at is not None
        spent = time.monotonic() - self.requested_at
        return spent + rounds_left * seconds_per_round < self.grace_seconds


_AUC = re.compile(r"validation-auc:([-+0-9.eE]+)")


def _finished(state: TrainingState, args: argparse.Namespace) -> bool:
    if state.rounds >= args.num_round:
        return True
    patience = args.early_stopping_rounds
    return bool(patience) and state.best_iteration >= 0 and state.rounds - 1 - state.best_iteration >= patience


def boost(
    params: dict, dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, args: argparse.Namespace,
    store: CheckpointStore | None, termination: Termination | None = None,
) -> tuple[xgb.Booster, TrainingState]:
    """Boosting rounds with early stopping on validation AUC, resumable from ``store``.

    Each checkpoint interval starts from the saved model, whether or not the job was interrupted:
    XGBoost's row and column samplers keep random state that a saved model does not carry, so
    only this makes a resumed run identical to an uninterrupted one (see docs/training.md for
    what it costs). Without a store the rounds run in one go.
    """
    resumed = store.latest() if store else None
    raw, state = resumed if resumed else (None, TrainingState())
    if resumed:
        print(f"resumed_from_round: {state.rounds}", flush=True)
    every = args.checkpoint_every if store else args.num_round
    booster = None
    started, rounds_run = time.monotonic(), 0
    while not _finished(state, args):
        booster = xgb.Booster(params, [dtrain, dvalid], model_file=raw)
        end = min(args.num_round, (state.rounds // every + 1) * every)
        while state.rounds < end:
            i = state.rounds
            booster.update(dtrain, iteration=i)
            line = booster.eval_set([(dvalid, "validation")], i)
            score = float(_AUC.search(line).group(1))
            state.rounds += 1
            rounds_run += 1
            if score > state.best_score:
                state.best_score, state.best_iteration = score, i
            if i % args.log_every == 0 or _finished(state, args):
                print(line, flush=True)
            if _finished(state, args):
                break
            pace = (time.monotonic() - started) / rounds_run
            if termination and termination.requested and not termination.can_finish(end - state.rounds, pace):
                break
        if store:
            path = store.save(booster, state)
            log.info("checkpoint %s", path.name)
        raw = bytearray(booster.save_raw("ubj"))
        if termination and termination.requested and not _finished(state, args):
            raise Interrupted(f"interrupted at round {state.rounds}; checkpoint saved, resume continues from there")
    print(f"rounds_trained_this_attempt: {rounds_run}", flush=True)
    if booster is None:  # resumed from a checkpoint that had already finished
        booster = xgb.Booster(params, model_file=raw)
    return booster, state


def _load_champion(path: str, names: list[str]) -> tuple[xgb.Booster | None, str]:
    """The champion model from its channel (model.tar.gz or the model file); None and why if unusable."""
    folder = Path(path)
    model_file = next(folder.rglob(MODEL_FILE_NAME), None)
    if model_file is None:
        archive = next(folder.rglob("*.tar.gz"), None)
        if archive is None:
            return None, f"champion channel {path} has neither {MODEL_FILE_NAME} nor a model.tar.gz"
        # Only the model file, copied to a name of ours: no path from the archive is trusted, and
        # tarfile's extraction filters are missing from the container's older Python 3.8 builds.
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == MODEL_FILE_NAME), None)
            if member is None:
                return None, f"{archive.name} holds no {MODEL_FILE_NAME}"
            model_file = Path(tempfile.mkdtemp(prefix="champion-")) / MODEL_FILE_NAME
            with tar.extractfile(member) as source, model_file.open("wb") as sink:
                shutil.copyfileobj(source, sink)
    booster = xgb.Booster(model_file=str(model_file))
    if list(booster.feature_names or []) != names:
        return None, (
            f"champion features {booster.feature_names} differ from this training set's {names}: "
            "not comparable on this holdout"
        )
    return booster, ""


def xgb_params(args: argparse.Namespace) -> dict:
    """The XGBoost booster parameters for the validated hyperparameters."""
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "max_depth": args.max_depth,
        "eta": args.eta,
        "subsample": args.subsample,
        "colsample_bytree": args.colsample_bytree,
        "min_child_weight": args.min_child_weight,
        "gamma": args.gamma,
        "lambda": args.reg_lambda,
        "alpha": args.reg_alpha,
        "seed": args.seed,
    }
    if args.nthread:
        params["nthread"] = args.nthread
    return params


def canary_records(features: pd.DataFrame, booster: xgb.Booster, rows: int = CANARY_ROWS) -> dict:
    """Sample rows and the scores this booster gives them: what a deployment must reproduce.

    Spread over the score range (every n-th row by score), so a serving stack that mixes up
    features or loads another model cannot match them by chance.
    """
    scores = booster.inplace_predict(features.to_numpy(dtype="float64"))
    order = np.argsort(scores, kind="stable")
    picked = order[np.linspace(0, len(order) - 1, num=min(rows, len(order))).astype(int)]
    values = features.to_numpy(dtype="float64")[picked]
    return {
        "features": list(features.columns),
        "rows": [[None if np.isnan(v) else float(v) for v in row] for row in values],
        "scores": [float(scores[i]) for i in picked],
    }


def train(args: argparse.Namespace, termination: Termination | None = None) -> dict:
    x_train, y_train = read_channel(args.train, "train")
    names = list(x_train.columns)
    x_valid, y_valid = read_channel(args.validation, "validation", names)
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=names)
    dvalid = xgb.DMatrix(x_valid, label=y_valid, feature_names=names)
    params = xgb_params(args)
    log.info("training on %d rows (%d churners), validating on %d rows", len(y_train), int(y_train.sum()), len(y_valid))
    store = CheckpointStore(args.checkpoint_dir) if args.checkpoint_dir and Path(args.checkpoint_dir).is_dir() else None
    if store is None:
        log.info("no checkpoint folder (%s): training without checkpoints", args.checkpoint_dir)
    booster, state = boost(params, dtrain, dvalid, args, store, termination)
    if args.early_stopping_rounds:
        booster = booster[: state.best_iteration + 1]
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(model_dir / MODEL_FILE_NAME)

    results = churn_evaluation.metrics(y_valid.to_numpy(), booster.predict(dvalid), "validation")
    report: dict = {
        "rounds": int(booster.num_boosted_rounds()), "features": names, "train_rows": int(len(y_train)),
        "validation_rows": int(len(y_valid)),
    }
    output_dir = Path(args.output_data_dir)
    if args.holdout:
        x_hold, y_hold = read_channel(args.holdout, "holdout", names)
        dhold = xgb.DMatrix(x_hold, feature_names=names)
        labels = y_hold.to_numpy()
        curves = {"challenger": booster.predict(dhold)}
        results.update(churn_evaluation.metrics(labels, curves["challenger"], "holdout"))
        feature, auc = best_single_feature_auc(x_hold, y_hold)
        results["holdout:best_single_feature_auc"] = auc
        report.update(holdout_rows=int(len(y_hold)), holdout_positives=int(y_hold.sum()), best_single_feature=feature)
        if args.champion:
            champion, reason = _load_champion(args.champion, names)
            if champion is None:
                log.warning("champion not evaluated: %s", reason)
                report["champion_not_evaluated"] = reason
            else:
                curves["champion"] = champion.predict(dhold)
                results.update(churn_evaluation.metrics(labels, curves["champion"], "champion:holdout"))
        report["card_plot"] = churn_evaluation.write_card_plot(
            output_dir / CARD_PLOT_NAME, labels, curves, booster.get_score(importance_type="total_gain"),
            f"churn XGBoost: {len(y_hold)} holdout rows, {int(y_hold.sum())} churners",
        )
        # What the monitoring job compares each day's data with; SageMaker sets TRAINING_JOB_NAME.
        baseline = churn_baseline.build(x_train, curves["challenger"], os.environ.get("TRAINING_JOB_NAME", ""))
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / churn_baseline.FILE_NAME).write_text(json.dumps(baseline, indent=1))
    for name, value in results.items():
        print(f"{name}: {value:.6f}", flush=True)
    report["metrics"] = results
    report["canary"] = canary_records(x_hold if args.holdout else x_valid, booster)
    report["hyperparameters"] = {k: v for k, v in params.items() if k != "eval_metric"}
    for folder in (model_dir, output_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    termination = Termination()
    termination.install()
    try:
        train(parse_args(sys.argv[1:] if argv is None else argv), termination)
    except Interrupted as err:
        # Not a failure of the algorithm: SageMaker restarts a spot job, which resumes from the checkpoint.
        log.warning("%s", err)
        return INTERRUPTED_EXIT_CODE
    except TrainingInputError as err:
        # SageMaker reports the content of /opt/ml/output/failure as the job's FailureReason.
        failure = Path(os.environ.get("SM_FAILURE_FILE", FAILURE_FILE))
        try:
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(str(err))
        except OSError:
            pass
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
