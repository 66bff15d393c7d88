"""The inference handlers, called directly: content types, ids, errors with their HTTP status."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

import inference
from inference import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedContentTypeError,
    input_fn,
    output_fn,
    predict_fn,
)

NAMES = ["tenure", "charge", "calls"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> xgb.Booster:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] > 0.3).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=y, feature_names=NAMES), 10)
    folder = tmp_path_factory.mktemp("model")
    booster.save_model(folder / inference.MODEL_FILE_NAME)
    return inference.model_fn(str(folder))


ROWS = [[0.5, 1.0, -2.0], [-1.5, 0.0, 3.25], [2.0, float("nan"), 0.0]]


def _expected(model):
    return model.inplace_predict(np.array(ROWS))


def _score(model, body, content_type, accept=None):
    data = input_fn(body, content_type)
    return output_fn(predict_fn(data, model), inference.response_type(accept, content_type))


def test_csv_without_ids_returns_one_score_per_line(model):
    body = "0.5,1.0,-2.0\n-1.5,0,3.25\n2.0,,0\n"
    text, media = _score(model, body, "text/csv")
    assert media == "text/csv"
    assert [float(s) for s in text.splitlines()] == pytest.approx(_expected(model), abs=1e-6)


def test_csv_with_an_id_column_echoes_the_ids(model):
    body = "C001,0.5,1.0,-2.0\nC002,-1.5,0,3.25\nC003,2.0,,0\n"
    text, _ = _score(model, body, "text/csv; charset=utf-8")
    ids, scores = zip(*(line.split(",") for line in text.splitlines()))
    assert ids == ("C001", "C002", "C003")
    assert [float(s) for s in scores] == pytest.approx(_expected(model), abs=1e-6)


def test_numeric_ids_are_recognised_by_the_extra_column(model):
    text, _ = _score(model, "17,0.5,1.0,-2.0\n18,-1.5,0,3.25\n", "text/csv")
    assert [line.split(",")[0] for line in text.splitlines()] == ["17", "18"]


def test_json_lists_objects_and_named_features_agree(model):
    expected = _expected(model)[:2]
    as_lists = json.dumps({"instances": ROWS[:2]})
    as_objects = json.dumps({"instances": [{"id": "a", "features": ROWS[0]}, {"id": "b", "features": ROWS[1]}]})
    as_named = json.dumps([dict(zip(NAMES, ROWS[0]), id="a"), dict(zip(NAMES, ROWS[1]), id="b")])
    for body in (as_lists, as_objects, as_named):
        text, media = _score(model, body, "application/json")
        assert media == "application/json"
        scores = [p["score"] for p in json.loads(text)["predictions"]]
        assert scores == pytest.approx(expected, abs=1e-6)
    named = json.loads(_score(model, as_named, "application/json")[0])["predictions"]
    assert [p["id"] for p in named] == ["a", "b"]


def test_jsonlines_in_and_out_and_explicit_accept(model):
    body = "\n".join(json.dumps(r) for r in ROWS[:2]) + "\n"
    text, media = _score(model, body, "application/jsonlines")
    assert media == "application/jsonlines"
    assert [json.loads(line)["score"] for line in text.splitlines()] == pytest.approx(_expected(model)[:2], abs=1e-6)
    text, media = _score(model, body, "application/jsonlines", accept="text/csv")
    assert media == "text/csv" and len(text.splitlines()) == 2


def test_null_json_values_are_missing_values_like_empty_csv_fields(model):
    body = json.dumps({"instances": [[2.0, None, 0.0]]})
    score = json.loads(_score(model, body, "application/json")[0])["predictions"][0]["score"]
    assert score == pytest.approx(_expected(model)[2], abs=1e-6)


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "application/jsonlines"])
def test_an_empty_body_is_zero_records(model, content_type):
    text, media = _score(model, b"", content_type)
    assert text in ("", '{"predictions": []}')


@pytest.mark.parametrize(
    ("body", "content_type", "error", "message"),
    [
        ("1,2,3", "application/x-protobuf", UnsupportedContentTypeError, "not supported; send one of"),
        ("1,2\n", "text/csv", BadRequestError, "needs 3 features"),
        ("1,2,3,4,5\n", "text/csv", BadRequestError, "needs 3 features"),
        ("1,2,3\n4,5\n", "text/csv", BadRequestError, "fewer"),
        ("1,2,3\n4,5,6,7\n", "text/csv", BadRequestError, "same number of fields"),
        ("C1,1,x,3\n", "text/csv", BadRequestError, "non-numeric value 'x'"),
        ("{not json", "application/json", BadRequestError, "not valid JSON"),
        ('{"rows": []}', "application/json", BadRequestError, "instances"),
        ('{"instances": [[1, 2, 3], [1, 2]]}', "application/json", BadRequestError, "same number of features"),
        ('{"instances": [{"tenure": 1, "charge": 2}]}', "application/json", BadRequestError, "missing features \\['calls'\\]"),
        ('{"instances": [["a", 2, 3]]}', "application/json", BadRequestError, "numbers or null"),
        ("[1,2,3]\nnope\n", "application/jsonlines", BadRequestError, "line 2 is not valid JSON"),
    ],
)
def test_bad_requests_say_what_was_expected(model, body, content_type, error, message):
    with pytest.raises(error, match=message) as caught:
        predict_fn(input_fn(body, content_type), model)
    assert caught.value.status == (415 if error is UnsupportedContentTypeError else 400)


def test_an_unsupported_accept_type_is_415(model):
    with pytest.raises(UnsupportedContentTypeError, match="accept type") as caught:
        inference.response_type("application/x-recordio-protobuf", "text/csv")
    assert caught.value.status == 415


def test_a_body_over_the_payload_limit_is_413(model, monkeypatch):
    big = "0.5,1.0,-2.0\n" * (6 * 1024 * 1024 // 13 + 1)
    with pytest.raises(PayloadTooLargeError, match="6 MB payload limit") as caught:
        input_fn(big, "text/csv")
    assert caught.value.status == 413
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "10")  # batch transform's MaxPayloadInMB
    assert len(input_fn(big, "text/csv")) == big.count("\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,2,3\n" * 100 + "4,5\n", "fewer"),
        ("1,2,3\n" * 100 + "4,5,6,7\n", "same number of fields"),
        ("C1,1,x,3\n" * 100, "non-numeric value 'x'"),
    ],
)
def test_large_csv_bodies_take_the_pandas_parser_with_the_same_errors(model, body, message):
    with pytest.raises(BadRequestError, match=message):
        predict_fn(input_fn(body, "text/csv"), model)


def test_small_and_large_csv_parsers_agree(model):
    rows = "".join(f"C{i},{i / 7:.3f},,{-i / 3:.3f}\n" for i in range(200))
    small = output_fn(predict_fn(input_fn(rows[: rows.index("C10,")], "text/csv"), model), "text/csv")[0]
    large = output_fn(predict_fn(input_fn(rows, "text/csv"), model), "text/csv")[0]
    assert large.startswith(small) and len(large.splitlines()) == 200
