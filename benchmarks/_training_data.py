"""Shared by the training benchmarks: the sample training set, loaded once, and churn_train.py's loop."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for sub in ("include/sagemaker", "plugins", "dags"):
    sys.path.insert(0, str(REPO / sub))

import xgboost as xgb  # noqa: E402

import churn_train as train  # noqa: E402


def training_set(lake_root: str | None = None, ds: str = "2026-07-02") -> Path:
    root = Path(lake_root or os.environ.get("LAKE_ROOT", REPO / ".lake"))
    path = root / "churn-lake" / "training_sets" / f"ds={ds}"
    if not (path / "train").is_dir():
        raise SystemExit(f"no training set at {path}: run `make run` first (it builds the sample's training set)")
    return path


def matrices(path: Path) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    x_train, y_train = train.read_channel(str(path / "train"), "train")
    names = list(x_train.columns)
    x_valid, y_valid = train.read_channel(str(path / "validation"), "validation", names)
    return (xgb.DMatrix(x_train, label=y_train, feature_names=names),
            xgb.DMatrix(x_valid, label=y_valid, feature_names=names))


def args_for(path: Path, hyperparameters: dict, checkpoint_dir: str = "") -> object:
    argv = [a for k, v in hyperparameters.items() for a in (f"--{k}", str(v))]
    argv += ["--train", str(path / "train"), "--validation", str(path / "validation"), "--checkpoint-dir", checkpoint_dir]
    return train.parse_args(argv)
