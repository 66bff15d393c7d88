"""Inference handlers for the churn XGBoost model (SageMaker framework-container contract).

``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn`` at module level, shared by the
endpoint container and batch transform.

Input (``Content-Type``):

- ``text/csv``: one record per line, no header, no quotes; the model's features in training order,
  optionally preceded by an id column (``C0000042,778.0,1.0,...``; a numeric first field is an id
  when the line has one field more than the model's features, and it is echoed as sent). Every
  request is read by the same parser (pandas' C parser), so a row means the same whatever comes
  with it. Features are decimal numbers; an empty field or ``nan``/``NaN``/``NAN`` is a missing
  value, as the SageMaker XGBoost container reads them (``NA``, ``null`` and the like are errors).
- ``application/json``: ``{"instances": [...]}`` (or a bare list), each instance either a list of
  feature values, ``{"id": ..., "features": [...]}``, or ``{"id": ..., "<feature name>": value, ...}``
  with every feature of the model named. Values are JSON numbers; ``null`` (or the ``NaN``
  literal) is a missing value; strings and booleans are errors; an id is a string or a number.
- ``application/jsonlines``: one such instance per line.

Non-finite values: ``inf``/``Infinity`` and numbers that overflow a double (``1e400``) are
rejected with 400 naming the field, in every format. XGBoost cannot score them (the SageMaker
container fails on them with a server error); a missing value is how to say "unknown".
A leading UTF-8 byte-order mark is ignored. A ``charset`` other than UTF-8 is 415.

Output (``Accept``; ``*/*`` or none answers in the request's type): ``text/csv`` one score per line
(``id,score`` when ids were sent), ``application/json`` ``{"predictions": [{"id": ..., "score": ...}]}``,
``application/jsonlines`` one ``{"id": ..., "score": ...}`` per line.

Errors carry an HTTP status: unsupported type 415, malformed body or wrong feature count 400 (the
message says what was expected), body over the payload limit (6 MB, or the transform job's
``SAGEMAKER_MAX_PAYLOAD_IN_MB``) 413. An empty body is zero records and gets an empty answer.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from churn_train import MODEL_FILE_NAME

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
    first_texts: Callable[[], list[str]] | None = None  # CSV: a numeric first column's text, the ids if the model says so

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
        raise FileNotFoundError(f"model file {MODEL_FILE_NAME} not found in {model_dir}: was the model trained by churn_train.py?")
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
    charset = _charset(content_type)
    if charset not in (None, "utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedContentTypeError(f"charset {charset!r} is not supported; send the body as UTF-8 (charset=utf-8)")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as err:
        raise BadRequestError(f"body is not UTF-8 text: {err}") from err
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the first field
        text = text[1:]  # (not str.removeprefix: the SageMaker XGBoost 1.7-1 container runs Python 3.8)
    if not text.strip():
        return Records(values=np.empty((0, 0)))
    if kind == CSV:
        return _parse_csv(text)
    if kind == JSON:
        document = _json(text, "body", 'send {"instances": [[...features], ...]}')
        instances = document.get("instances") if isinstance(document, dict) else document
        if not isinstance(instances, list):
            raise BadRequestError('JSON body must be {"instances": [...]} or a list of instances')
        return _parse_instances(instances)
    instances = [
        _json(line, f"line {number}", "send one instance per line")
        for number, line in enumerate(text.splitlines(), 1) if line.strip()
    ]
    return _parse_instances(instances)


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _json(text: str, what: str, hint: str):
    try:
        return json.loads(text)
    except ValueError as err:  # JSONDecodeError, and integers over Python's 4,300-digit limit
        raise BadRequestError(f"{what} is not valid JSON ({err}); {hint}") from err
    except RecursionError:
        raise BadRequestError(f"{what} nests JSON too deeply; {hint}") from None


# CSV: one parser (pandas' C parser) for every request, so a row means the same whatever comes with it.
# Missing values are empty fields or nan/NaN/NAN, as the SageMaker XGBoost container reads them;
# nothing else (NA, null, None) is taken for missing. Numbers are decimal ASCII: [+-]digits[.digits][e[+-]digits].
CSV_MISSING = ["", "nan", "NaN", "NAN"]
_CSV_OPTIONS = {"header": None, "skipinitialspace": True, "keep_default_na": False, "na_values": CSV_MISSING, "engine": "c"}


def _parse_csv(text: str) -> Records:
    if '"' in text:
        raise BadRequestError('CSV fields must not be quoted: send bare values separated by "," (an id may not contain commas)')
    try:
        frame = pd.read_csv(io.StringIO(text), **_CSV_OPTIONS)
    except (pd.errors.ParserError, ValueError) as err:
        raise BadRequestError(f"body is not CSV with the same number of fields on every line: {err}") from err
    width = frame.shape[1]
    if text.count(",") != len(frame) * (width - 1):
        # The C parser pads a short line with missing values; a long one is a ParserError above.
        raise BadRequestError(f"CSV lines must all have {width} fields like the first one; some lines have fewer")
    columns = [_numeric(frame.iloc[:, i], text, i) for i in range(width)]
    ids = first_texts = None
    if width > 1 and columns[0] is None:
        first = frame.iloc[:, 0].tolist()
        # A text column is the ids as sent; a boolean or wide-integer one is read again as text.
        ids = ([v.strip() if isinstance(v, str) else "" for v in first]
               if all(isinstance(v, str) or v is None or (isinstance(v, float) and math.isnan(v)) for v in first)
               else _csv_field_texts(text, 0))
        columns = columns[1:]
    elif width > 1:
        # A numeric first field may be an id (the model decides by the number of features): its text,
        # read only if the model says so (batch transform's filtered input never needs it).
        first_texts = functools.partial(_csv_field_texts, text, 0)
    offset = 1 if ids is not None else 0
    for i, column in enumerate(columns):
        if column is None:
            source = _csv_field_texts(text, i + offset)
            line, sample = next(((n, v) for n, v in enumerate(source, 1) if v != "" and _token_value(v) is None), (0, "?"))
            raise BadRequestError(
                f"CSV field {i + offset + 1} of line {line} has the non-numeric value {sample!r}; features must be "
                f"decimal numbers, empty or nan for a missing value (an id is only allowed in the first field)"
            )
    values = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    return Records(values=values, ids=ids, first_texts=first_texts)


def _csv_field_texts(text: str, index: int) -> list[str]:
    """Field ``index`` of every record as sent (stripped; "" when missing), read by the same parser."""
    column = pd.read_csv(io.StringIO(text), usecols=[index], dtype=str, **_CSV_OPTIONS).iloc[:, 0]
    return [v.strip() if isinstance(v, str) else "" for v in column]


def _numeric(column: pd.Series, text: str, index: int) -> np.ndarray | None:
    """The column as float64, or None when a value is not a number (booleans are not numbers).

    The C parser types a column from all its tokens; where that leaves text (a number beside an
    integer too big for 64 bits), each token is read on its own, as it would be in a request alone."""
    kind = column.dtype.kind
    if kind in "iuf":
        return column.to_numpy(dtype="float64")
    if kind == "b":
        return None
    if any(not isinstance(v, str) and _is_number(v) for v in column):
        # The parser's wide-integer path converts with Python's int(), which reads "1_0" as 10: the text, please.
        column = pd.Series(_csv_field_texts(text, index))
    values = [_token_value(v) if v != "" else math.nan for v in column]
    return None if any(v is None for v in values) else np.array(values, dtype="float64")


_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?", re.IGNORECASE)


def _token_value(value) -> float | None:
    if isinstance(value, str):
        token = value.strip(" \t\x0b\x0c")
        if token in CSV_MISSING:  # a text column keeps them as text
            return math.nan
        return float(token) if _DECIMAL.fullmatch(token) else None
    if _is_number(value):
        return _to_float(value)
    return math.nan if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _to_float(value) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _check_finite(values: np.ndarray) -> None:
    bad = np.argwhere(np.isinf(values))
    if len(bad):
        row, col = (int(i) for i in bad[0])
        raise BadRequestError(
            f"record {row + 1}, feature {col + 1} is {values[row, col]}: infinite values and numbers beyond "
            "\u00b11.8e308 cannot be scored; send a finite number, or an empty field (null in JSON) for a missing value"
        )


def _parse_instances(instances: list) -> Records:
    if not instances:
        return Records(values=np.empty((0, 0)))
    if all(isinstance(item, dict) for item in instances):
        if all(isinstance(item.get("features"), list) for item in instances):
            ids = [_id(item.get("id"), number) for number, item in enumerate(instances, 1)]
            return Records(values=_matrix([item["features"] for item in instances]),
                           ids=ids if any(i is not None for i in ids) else None)
        return Records(values=None, named=instances)
    if all(isinstance(item, list) for item in instances):
        return Records(values=_matrix(instances))
    raise BadRequestError(
        "each instance must be a list of feature values, {\"features\": [...]} or an object of named features; "
        "do not mix the forms in one request"
    )


def _id(value, number: int):
    if value is None or isinstance(value, str) or (_is_number(value) and math.isfinite(_to_float(value))):
        return value
    raise BadRequestError(f"instance {number}: the id must be a string or a finite number, got {json.dumps(value)[:40]}")


def _matrix(rows: list[list]) -> np.ndarray:
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise BadRequestError(f"every instance needs the same number of features, got lengths {sorted(widths)}")
    try:
        values = [[math.nan if v is None else _json_number(v) for v in row] for row in rows]
    except TypeError as err:
        raise BadRequestError(f"feature values must be numbers or null: {err}") from None
    return np.array(values, dtype="float64").reshape(len(rows), widths.pop())


def _json_number(value) -> float:
    if not _is_number(value):
        raise TypeError(f"got {json.dumps(value)[:40]}")
    return _to_float(value)


def predict_fn(data: Records, model: xgb.Booster) -> Scored:
    expected = model.num_features()
    if len(data) == 0:
        return Scored(scores=np.empty(0), ids=data.ids)
    values, ids = data.values, data.ids
    if data.named is not None:
        values, ids = _from_names(data.named, model)
    elif ids is None and values.shape[1] == expected + 1:
        # A numeric first column in CSV: the id, echoed as it was sent.
        ids = data.first_texts() if data.first_texts is not None else [f"{v:.17g}" for v in values[:, 0]]
        values = values[:, 1:]
    if values.shape[1] != expected:
        raise BadRequestError(
            f"each record needs {expected} features (optionally preceded by an id), got {values.shape[1]}"
            + (f"; the model's features are {', '.join(model.feature_names)}" if model.feature_names else "")
        )
    _check_finite(values)  # after the id is split off: an id may be any number
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
        ids.append(_id(item.get("id"), number))
    return _matrix(rows), ids if any(i is not None for i in ids) else None


def output_fn(prediction: Scored, accept: str | None) -> tuple[str, str]:
    kind = response_type(accept, CSV)
    scores, ids = prediction.scores, prediction.ids
    if kind == CSV:
        if ids is None:
            return "".join(f"{p:.6f}\n" for p in scores), CSV
        unsafe = next((i for i in ids if isinstance(i, str) and any(c in i for c in ',"\r\n')), None)
        if unsafe is not None:
            raise BadRequestError(
                f"the id {unsafe[:40]!r} has a comma, quote or line break, which a CSV answer cannot carry; "
                "ask for application/json or application/jsonlines (Accept)"
            )
        return "".join(f"{i},{p:.6f}\n" for i, p in zip(ids, scores)), CSV
    items = [{"score": round(float(p), 6)} for p in scores] if ids is None else [
        {"id": i, "score": round(float(p), 6)} for i, p in zip(ids, scores)
    ]
    if kind == JSON:
        return json.dumps({"predictions": items}), JSON
    return "".join(json.dumps(item) + "\n" for item in items), JSONL
