"""Inference handlers for the churn XGBoost model (SageMaker framework-container contract).

``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn`` at module level, shared by the
endpoint container and batch transform.

Input (``Content-Type``):

- ``text/csv``: one record per line, no header; the model's features in training order,
  optionally preceded by an id column (``C0000042,778.0,1.0,...``). Empty fields are missing values.
- ``application/json``: ``{"instances": [...]}`` (or a bare list), each instance either a list of
  feature values, ``{"id": ..., "features": [...]}``, or ``{"id": ..., "<feature name>": value, ...}``
  with every feature of the model named (``null`` = missing).
- ``application/jsonlines``: one such instance per line.

Output (``Accept``; ``*/*`` or none answers in the request's type): ``text/csv`` one score per line
(``id,score`` when ids were sent), ``application/json`` ``{"predictions": [{"id": ..., "score": ...}]}``,
``application/jsonlines`` one ``{"id": ..., "score": ...}`` per line.

Errors carry an HTTP status: unsupported type 415, malformed body or wrong feature count 400 (the
message says what was expected), body over the payload limit (6 MB, or the transform job's
``SAGEMAKER_MAX_PAYLOAD_IN_MB``) 413. An empty body is zero records and gets an empty answer.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from train import MODEL_FILE_NAME

CSV = "text/csv"
JSON = "application/json"
JSONL = "application/jsonlines"
_ALIASES = {"application/jsonl": JSONL, "application/x-jsonlines": JSONL, "text/plain": CSV}
SUPPORTED = (CSV, JSON, JSONL)
DEFAULT_MAX_PAYLOAD_MB = 6


class InferenceError(ValueError):
    """A request the model cannot answer; ``status`` is the HTTP status the server returns."""

    status = 400


class UnsupportedContentTypeError(InferenceError):
    status = 415


class BadRequestError(InferenceError):
    status = 400


class PayloadTooLargeError(InferenceError):
    status = 413


@dataclass
class Records:
    """Parsed request: a float matrix (or instances still to be matched to feature names) and ids."""

    values: np.ndarray | None
    ids: list | None = None
    named: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.named) if self.named is not None else int(self.values.shape[0])


@dataclass
class Scored:
    scores: np.ndarray
    ids: list | None = None


def max_payload_bytes() -> int:
    """6 MB, the real-time limit; batch transform sets SAGEMAKER_MAX_PAYLOAD_IN_MB (0 = no limit)."""
    mb = int(os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_MAX_PAYLOAD_MB))
    return mb * 1024 * 1024 if mb > 0 else 0


def media_type(content_type: str | None) -> str | None:
    value = (content_type or "").split(";")[0].strip().lower()
    return _ALIASES.get(value, value) or None


def response_type(accept: str | None, content_type: str | None) -> str:
    """The output type for ``accept``: ``*/*`` or none answers in the request's own type."""
    wanted = [media_type(part) for part in (accept or "").split(",") if part.strip()]
    for value in wanted:
        if value in SUPPORTED:
            return value
        if value in ("*/*", "application/*", "text/*"):
            return media_type(content_type) if media_type(content_type) in SUPPORTED else CSV
    if not wanted:
        return media_type(content_type) if media_type(content_type) in SUPPORTED else CSV
    raise UnsupportedContentTypeError(f"accept type {accept!r} is not supported; ask for one of {', '.join(SUPPORTED)}")


def model_fn(model_dir: str) -> xgb.Booster:
    path = os.path.join(model_dir, MODEL_FILE_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {MODEL_FILE_NAME} not found in {model_dir}: was the model trained by train.py?")
    booster = xgb.Booster()
    booster.load_model(path)
    booster.set_param({"nthread": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))})
    return booster


def input_fn(body: bytes | str, content_type: str | None) -> Records:
    limit = max_payload_bytes()
    size = len(body.encode("utf-8") if isinstance(body, str) else body)
    if limit and size > limit:
        raise PayloadTooLargeError(
            f"body of {size} bytes is over the {limit // (1024 * 1024)} MB payload limit; split it into smaller requests"
        )
    kind = media_type(content_type) or CSV
    if kind not in SUPPORTED:
        raise UnsupportedContentTypeError(f"content type {content_type!r} is not supported; send one of {', '.join(SUPPORTED)}")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as err:
        raise BadRequestError(f"body is not UTF-8 text: {err}") from err
    if not text.strip():
        return Records(values=np.empty((0, 0)))
    if kind == CSV:
        return _parse_csv(text)
    if kind == JSON:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadRequestError(f"body is not valid JSON ({err}); send {{\"instances\": [[...features], ...]}}") from err
        instances = document.get("instances") if isinstance(document, dict) else document
        if not isinstance(instances, list):
            raise BadRequestError('JSON body must be {"instances": [...]} or a list of instances')
        return _parse_instances(instances)
    instances = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                instances.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise BadRequestError(f"line {number} is not valid JSON ({err}); send one instance per line") from err
    return _parse_instances(instances)


SMALL_CSV_LINES = 64  # below this, plain Python parses faster than pandas (which costs ~1 ms a call)


def _parse_csv(text: str) -> Records:
    if '"' not in text and text.count("\n") <= SMALL_CSV_LINES:
        return _parse_small_csv(text)
    try:
        frame = pd.read_csv(io.StringIO(text), header=None, skip_blank_lines=True, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as err:
        raise BadRequestError(f"body is not CSV with the same number of fields on every line: {err}") from err
    if '"' not in text and text.count(",") != len(frame) * (frame.shape[1] - 1):
        raise BadRequestError(
            f"every CSV line needs {frame.shape[1]} fields like the first one; some lines have fewer"
        )
    ids = None
    if frame.shape[1] > 1 and not pd.api.types.is_numeric_dtype(frame.dtypes.iloc[0]):
        ids = frame.iloc[:, 0].astype(str).tolist()
        frame = frame.iloc[:, 1:]
    bad = [i for i, dtype in enumerate(frame.dtypes) if not pd.api.types.is_numeric_dtype(dtype)]
    if bad:
        column = frame.iloc[:, bad[0]]
        sample = next(v for v in column if not _is_number(v))
        position = bad[0] + (1 if ids is not None else 0) + 1
        raise BadRequestError(
            f"CSV field {position} has the non-numeric value {sample!r}; features must be numbers "
            "(an id is only allowed in the first field)"
        )
    return Records(values=frame.to_numpy(dtype="float64"), ids=ids)


def _parse_small_csv(text: str) -> Records:
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    width = len(rows[0])
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise BadRequestError(
                f"CSV lines must all have the same number of fields as the first one ({width}); line {number} has "
                f"{len(row)} ({'fewer' if len(row) < width else 'more'})"
            )
    ids = None
    if width > 1 and not all(_is_number(row[0]) or not row[0].strip() for row in rows):
        ids = [row[0].strip() for row in rows]
        rows = [row[1:] for row in rows]
    try:
        values = np.array([[float(v) if v.strip() else math.nan for v in row] for row in rows], dtype="float64")
    except ValueError:
        position, sample = next(
            (i, v) for row in rows for i, v in enumerate(row) if v.strip() and not _is_number(v)
        )
        raise BadRequestError(
            f"CSV field {position + (2 if ids is not None else 1)} has the non-numeric value {sample.strip()!r}; "
            "features must be numbers (an id is only allowed in the first field)"
        ) from None
    return Records(values=values, ids=ids)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _parse_instances(instances: list) -> Records:
    if not instances:
        return Records(values=np.empty((0, 0)))
    if all(isinstance(item, dict) for item in instances):
        if all(isinstance(item.get("features"), list) for item in instances):
            ids = [item.get("id") for item in instances]
            return Records(values=_matrix([item["features"] for item in instances]),
                           ids=ids if any(i is not None for i in ids) else None)
        return Records(values=None, named=instances)
    if all(isinstance(item, list) for item in instances):
        return Records(values=_matrix(instances))
    raise BadRequestError(
        "each instance must be a list of feature values, {\"features\": [...]} or an object of named features; "
        "do not mix the forms in one request"
    )


def _matrix(rows: list[list]) -> np.ndarray:
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise BadRequestError(f"every instance needs the same number of features, got lengths {sorted(widths)}")
    try:
        return np.array([[math.nan if v is None else v for v in row] for row in rows], dtype="float64")
    except (TypeError, ValueError) as err:
        raise BadRequestError(f"feature values must be numbers or null: {err}") from err


def predict_fn(data: Records, model: xgb.Booster) -> Scored:
    expected = model.num_features()
    if len(data) == 0:
        return Scored(scores=np.empty(0), ids=data.ids)
    values, ids = data.values, data.ids
    if data.named is not None:
        values, ids = _from_names(data.named, model)
    elif ids is None and values.shape[1] == expected + 1:
        # A numeric first column in CSV: the id.
        ids = [f"{v:g}" for v in values[:, 0]]
        values = values[:, 1:]
    if values.shape[1] != expected:
        raise BadRequestError(
            f"each record needs {expected} features (optionally preceded by an id), got {values.shape[1]}"
            + (f"; the model's features are {', '.join(model.feature_names)}" if model.feature_names else "")
        )
    return Scored(scores=model.inplace_predict(values, validate_features=False), ids=ids)


def _from_names(instances: list[dict], model: xgb.Booster) -> tuple[np.ndarray, list | None]:
    names = list(model.feature_names or [])
    if not names:
        raise BadRequestError("this model has no feature names: send features as lists instead of named objects")
    rows, ids = [], []
    for number, item in enumerate(instances, 1):
        missing = [n for n in names if n not in item]
        unknown = [k for k in item if k not in names and k != "id"]
        if missing or unknown:
            raise BadRequestError(
                f"instance {number}: " + "; ".join(
                    part for part in (
                        f"missing features {missing}" if missing else "", f"unknown fields {unknown}" if unknown else ""
                    ) if part
                ) + f". Expected the fields {names} and an optional 'id'"
            )
        rows.append([item[n] for n in names])
        ids.append(item.get("id"))
    return _matrix(rows), ids if any(i is not None for i in ids) else None


def output_fn(prediction: Scored, accept: str | None) -> tuple[str, str]:
    kind = response_type(accept, CSV)
    scores, ids = prediction.scores, prediction.ids
    if kind == CSV:
        if ids is None:
            return "".join(f"{p:.6f}\n" for p in scores), CSV
        return "".join(f"{i},{p:.6f}\n" for i, p in zip(ids, scores)), CSV
    items = [{"score": round(float(p), 6)} for p in scores] if ids is None else [
        {"id": i, "score": round(float(p), 6)} for i, p in zip(ids, scores)
    ]
    if kind == JSON:
        return json.dumps({"predictions": items}), JSON
    return "".join(json.dumps(item) + "\n" for item in items), JSONL
