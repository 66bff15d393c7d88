"""SageMaker script-mode entry point: train the churn XGBoost model and evaluate it on the holdout.

Runs unchanged in the SageMaker XGBoost framework container and in the local runner, which
reproduces the training contract (``SM_*`` variables, an ``/opt/ml``-shaped directory, channels
as folders of CSV files). Channels: ``train`` and ``validation`` (required), ``holdout``
(optional; never used for fitting or early stopping). CSV files have a header: the label
``churned_30d`` first, then the features.

Metrics are printed one per line as ``<name>: <value>`` (and XGBoost's own
``[i]\\tvalidation-auc:...`` lines), the form the MetricDefinitions of the training request parse.
The model goes to ``SM_MODEL_DIR/xgboost-model.json`` and the holdout evaluation next to it as
``evaluation.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

MODEL_FILE_NAME = "xgboost-model.json"
EVALUATION_FILE_NAME = "evaluation.json"
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
    # SageMaker paths.
    parser.add_argument("--model-dir", default=env("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--output-data-dir", default=env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    parser.add_argument("--train", default=env("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=env("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--holdout", default=env("SM_CHANNEL_HOLDOUT"))
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


def evaluate(labels: np.ndarray, scores: np.ndarray, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}:auc": float(roc_auc_score(labels, scores)),
        f"{prefix}:pr_auc": float(average_precision_score(labels, scores)),
        f"{prefix}:logloss": float(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7))),
    }


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


def train(args: argparse.Namespace) -> dict:
    x_train, y_train = read_channel(args.train, "train")
    names = list(x_train.columns)
    x_valid, y_valid = read_channel(args.validation, "validation", names)
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=names)
    dvalid = xgb.DMatrix(x_valid, label=y_valid, feature_names=names)
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
    log.info("training on %d rows (%d churners), validating on %d rows", len(y_train), int(y_train.sum()), len(y_valid))
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=args.num_round,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        early_stopping_rounds=args.early_stopping_rounds or None,
        verbose_eval=10,
    )
    best_iteration = getattr(booster, "best_iteration", args.num_round - 1)
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if args.early_stopping_rounds:
        booster = booster[: best_iteration + 1]
    booster.save_model(model_dir / MODEL_FILE_NAME)

    metrics = evaluate(y_valid.to_numpy(), booster.predict(dvalid), "validation")
    report: dict = {"rounds": int(best_iteration + 1), "features": names, "train_rows": int(len(y_train))}
    if args.holdout:
        x_hold, y_hold = read_channel(args.holdout, "holdout", names)
        scores = booster.predict(xgb.DMatrix(x_hold, feature_names=names))
        metrics.update(evaluate(y_hold.to_numpy(), scores, "holdout"))
        feature, auc = best_single_feature_auc(x_hold, y_hold)
        metrics["holdout:best_single_feature_auc"] = auc
        report.update(holdout_rows=int(len(y_hold)), holdout_positives=int(y_hold.sum()), best_single_feature=feature)
    for name, value in metrics.items():
        print(f"{name}: {value:.6f}", flush=True)
    report["metrics"] = metrics
    for folder in (model_dir, Path(args.output_data_dir)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    try:
        train(parse_args(sys.argv[1:] if argv is None else argv))
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
