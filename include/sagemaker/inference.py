"""Inference handlers for the churn XGBoost model (SageMaker framework-container contract).

``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn`` at module level, shared by batch
transform and endpoints. Input ``text/csv``: one record per line, the features in the model's
order, no header (batch transform strips the id column with its InputFilter). Output ``text/csv``:
one churn probability per line.
"""

from __future__ import annotations

import io
import os

import numpy as np
import xgboost as xgb

from train import MODEL_FILE_NAME

CSV = "text/csv"


class UnsupportedContentTypeError(ValueError):
    """The request's content type or accept type is not one this model serves (HTTP 415)."""


class BadRequestError(ValueError):
    """The request body cannot be scored (HTTP 400); the message says what was expected."""


def model_fn(model_dir: str) -> xgb.Booster:
    path = os.path.join(model_dir, MODEL_FILE_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {MODEL_FILE_NAME} not found in {model_dir}: was the model trained by train.py?")
    booster = xgb.Booster()
    booster.load_model(path)
    return booster


def _media_type(content_type: str | None) -> str:
    return (content_type or CSV).split(";")[0].strip().lower()


def input_fn(body: bytes | str, content_type: str | None, n_features: int | None = None) -> np.ndarray:
    if _media_type(content_type) != CSV:
        raise UnsupportedContentTypeError(f"content type {content_type!r} is not supported; send {CSV}")
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if not text.strip():
        return np.empty((0, n_features or 0))
    try:
        rows = np.loadtxt(io.StringIO(text), delimiter=",", dtype="float64", ndmin=2)
    except ValueError as err:
        raise BadRequestError(f"body is not numeric CSV (one record per line, features only): {err}") from err
    if n_features is not None and rows.shape[1] != n_features:
        raise BadRequestError(f"each record needs {n_features} features, got {rows.shape[1]}")
    return rows


def predict_fn(data: np.ndarray, model: xgb.Booster) -> np.ndarray:
    expected = model.num_features()
    if data.shape[0] == 0:
        return np.empty(0)
    if data.shape[1] != expected:
        raise BadRequestError(f"each record needs {expected} features, got {data.shape[1]}")
    return model.inplace_predict(data)


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str, str]:
    if _media_type(accept) != CSV:
        raise UnsupportedContentTypeError(f"accept type {accept!r} is not supported; ask for {CSV}")
    return "".join(f"{p:.6f}\n" for p in prediction), CSV
