"""The inference handlers, called directly: content types, ids, errors with their HTTP status."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st

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
        ("1,2,1e400\n", "feature 3 is inf"),
        ("C1,inf,2,3\n", "feature 1 is inf"),
        ("1,2,1_0\n", "non-numeric value '1_0'"),
        ("1,2,True\n", "non-numeric value 'True'"),
        ("1,2,NA\n", "non-numeric value 'NA'"),
        ('C1,"1",2,3\n', "must not be quoted"),
        ("[[1, 2, Infinity]]", "feature 3 is inf"),
        ("[[1, 2, true]]", "numbers or null: got true"),
        ('[[1, 2, "3"]]', "numbers or null"),
        ("[" * 50_000 + "]" * 50_000, "too deeply"),
        ('[{"id": {"a": 1}, "features": [1, 2, 3]}]', "id must be a string or a finite number"),
    ],
)
def test_malformed_values_are_400_with_what_was_expected(model, body, message):
    content_type = "application/json" if body.startswith(("[", "{")) else "text/csv"
    with pytest.raises(BadRequestError, match=message):
        predict_fn(input_fn(body, content_type), model)


def test_missing_values_bom_and_numeric_ids(model):
    nan = float("nan")
    scored = _score(model, "\ufeffC1,0.5,,-2\nC2,nan,NaN,NAN\n", "text/csv", "application/json")
    assert [p["id"] for p in json.loads(scored[0])["predictions"]] == ["C1", "C2"]  # no BOM in the id
    expected = model.inplace_predict(np.array([[0.5, nan, -2.0], [nan, nan, nan]]))
    assert [p["score"] for p in json.loads(scored[0])["predictions"]] == pytest.approx(expected, abs=1e-6)
    # A numeric id is echoed as sent, even one a double cannot hold or one that would overflow.
    text, _ = _score(model, "0042,1,2,3\n12345678901234567,1,2,3\n1e400,1,2,3\n", "text/csv")
    assert [line.split(",")[0] for line in text.splitlines()] == ["0042", "12345678901234567", "1e400"]
    assert _score(model, "[[NaN, null, 1]]", "application/json")[0] == _score(model, "[[null, null, 1]]", "application/json")[0]


def test_a_csv_answer_refuses_ids_it_cannot_carry(model):
    with pytest.raises(BadRequestError, match="ask for application/json"):
        _score(model, '{"instances": [{"id": "a,b", "features": [1, 2, 3]}]}', "application/json", "text/csv")
    with pytest.raises(UnsupportedContentTypeError, match="UTF-8"):
        input_fn("1,2,3\n", "text/csv; charset=latin-1")


# The differential property: a row means the same whatever comes with it. Rows share one layout
# (all with an id or none, one width), as the rows of a request do; tokens include the edge cases.
_TOKENS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.5g}"),
    st.integers(-(10**22), 10**22).map(str),
    st.sampled_from(["", "nan", "NaN", "NAN", " 1", "2 ", "+.5", "5.", "0001", "1E5", "-0", "1e-400", "99999999999999999999",
                     "inf", "1e400", "1_0", "NA", "True", "\u0661", "x"]),
)
_IDS = st.one_of(st.from_regex(r"C[0-9]{1,6}", fullmatch=True), st.integers(0, 10**20).map(str), _TOKENS)


def _answer(model, body: str):
    try:
        return _score(model, body, "text/csv", "application/jsonlines")[0].splitlines()
    except BadRequestError:
        return None


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 3).flatmap(lambda width: st.lists(
    st.tuples(_IDS, st.lists(_TOKENS, min_size=width + 2, max_size=width + 2)), min_size=1, max_size=70)),
    with_id=st.booleans())
def test_n_rows_in_one_request_score_as_the_same_rows_one_by_one(model, rows, with_id):
    lines = [",".join(([row_id] if with_id else []) + fields) + "\n" for row_id, fields in rows]
    together = _answer(model, "".join(lines))
    alone = [_answer(model, line) for line in lines]
    if together is None:
        assert any(answer is None for answer in alone)  # a bad row fails the request it is in
    else:
        assert all(answer is not None for answer in alone)
        assert together == [answer[0] for answer in alone]  # same ids, same scores, to the last digit
