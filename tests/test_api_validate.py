"""Unit tests of the flows API's pure parts: row validation, gzip limits, query parameters, rate limit, paging."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsink.api.ratelimit import RateLimiter
from flowsink.api.store import _page, decode_cursor, encode_cursor
from flowsink.api.validate import (
    INT64_MAX,
    RequestError,
    decompress,
    parse_hour,
    parse_limit,
    parse_rows,
    row_errors,
)

GOOD = {"src_app": "web", "dest_app": "db", "vpc_id": "vpc-1", "bytes_tx": 10, "bytes_rx": 20, "hour": 5}


def refused(body: object, rows_limit: int = 100) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_rows(body if isinstance(body, bytes) else json.dumps(body).encode(), rows_limit)
    return info.value


text = st.characters(exclude_categories=("Cs",))  # lone surrogates are not JSON orjson accepts
field_values = st.one_of(
    st.text(text, max_size=70),
    st.text(text, min_size=60, max_size=300),
    st.integers(min_value=-2, max_value=INT64_MAX + 2),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
rows_strategy = st.lists(
    st.dictionaries(st.sampled_from([*GOOD, "other"]), field_values, min_size=5, max_size=7).map(
        lambda d: {**GOOD, **d} if len(d) == 5 else d
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(rows_strategy)
def test_fast_path_agrees_with_the_detailed_check(rows):
    """The one-pass validator and the per-field report accept exactly the same rows."""
    body = json.dumps(rows).encode()
    if all(not row_errors(row) for row in rows):
        assert parse_rows(body, 100).rows == len(rows)
    else:
        with pytest.raises(RequestError) as info:
            parse_rows(body, 100)
        assert info.value.status == 400 and info.value.details


def test_valid_rows_are_aggregated_per_key():
    batch = parse_rows(orjson.dumps([GOOD, GOOD, {**GOOD, "hour": 6}]), 10)
    assert batch.rows == 3
    assert batch.sums == {(5, "web", "db", "vpc-1"): [20, 40], (6, "web", "db", "vpc-1"): [10, 20]}


def test_empty_array_is_valid():
    assert parse_rows(b"[]", 10).rows == 0


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"src_app": ""}, "src_app", "must not be empty"),
        ({"dest_app": "x" * 257}, "dest_app", "at most 256 bytes"),
        ({"vpc_id": "é" * 129}, "vpc_id", "at most 256 bytes"),  # 258 bytes of UTF-8, 129 characters
        ({"vpc_id": 7}, "vpc_id", "must be a string"),
        ({"bytes_tx": -1}, "bytes_tx", "non-negative"),
        ({"bytes_rx": INT64_MAX + 1}, "bytes_rx", "signed 64-bit"),
        ({"bytes_rx": 10**30}, "bytes_rx", "not a 64-bit integer"),
        ({"bytes_tx": True}, "bytes_tx", "got boolean"),
        ({"bytes_tx": 1.5}, "bytes_tx", "must be an integer"),
        ({"hour": "5"}, "hour", "got string"),
        ({"hour": None}, "hour", "got null"),
        ({"extra": 1}, "extra", "unknown field"),
    ],
)
def test_each_bad_field_is_named(change, field, reason):
    error = refused([GOOD, {**GOOD, **change}])
    assert error.status == 400 and error.reason == "invalid_rows"
    assert [(d["row"], d["field"]) for d in error.details] == [(1, field)]
    assert reason in error.details[0]["reason"]


def test_missing_field_and_non_object_rows():
    row = dict(GOOD)
    del row["hour"]
    error = refused([row, 5, []])
    assert {(d["row"], d["field"]) for d in error.details} == {(0, "hour"), (1, None), (2, None)}
    assert "1 of" not in error.message and "3 of 3 rows are invalid" in error.message


def test_at_most_100_problems_are_listed():
    error = refused([{**GOOD, "hour": -1}] * 250, rows_limit=1000)
    assert len(error.details) == 100
    assert "250 of 250" in error.message and "first 100" in error.message


def test_boundaries_are_accepted():
    edge = {**GOOD, "src_app": "x" * 256, "bytes_tx": INT64_MAX, "bytes_rx": 0, "hour": 0}
    assert parse_rows(orjson.dumps([edge]), 10).rows == 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"[{", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b'{"src_app": "a"}', 400, "not_an_array"),
        (orjson.dumps([GOOD] * 11), 413, "too_many_rows"),
    ],
)
def test_body_level_errors(body, status, reason):
    error = refused(body, rows_limit=10)
    assert (error.status, error.reason) == (status, reason)
    assert error.message


def test_gzip_round_trip_and_bomb():
    plain = orjson.dumps([GOOD] * 100)
    assert decompress(gzip.compress(plain), "gzip", 1 << 20) == plain
    bomb = gzip.compress(b" " * (5 << 20))  # 5 MiB of blanks compress to a few KiB
    assert len(bomb) < 64 * 1024
    for body, encoding, status in [
        (bomb, "gzip", 413),
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(plain)[:-10], "x-gzip", 400),
        (plain, "br", 415),
    ]:
        with pytest.raises(RequestError) as info:
            decompress(body, encoding, 1 << 20)
        assert info.value.status == status, (encoding, info.value.message)


@pytest.mark.parametrize("raw", [None, "", "-1", "1.5", "abc", "٣", str(INT64_MAX + 1)])
def test_bad_hour(raw):
    with pytest.raises(RequestError) as info:
        parse_hour(raw)
    assert info.value.status == 400


def test_good_hour_and_limit():
    assert parse_hour("0") == 0 and parse_hour("481234") == 481234
    assert parse_limit(None, 10) is None and parse_limit("10", 10) == 10
    for raw in ("0", "11", "x"):
        with pytest.raises(RequestError):
            parse_limit(raw, 10)


def test_rate_limit_token_bucket():
    limiter = RateLimiter(rate_per_s=100, burst=200)
    assert limiter.take("a", 150, now=0.0) == 0.0
    wait = limiter.take("a", 100, now=0.0)
    assert wait == pytest.approx(0.5)  # 50 tokens left, 50 more at 100/s
    assert limiter.take("b", 200, now=0.0) == 0.0  # buckets are per credential
    assert limiter.take("a", 100, now=0.5) == 0.0
    # a request larger than the bucket passes when the bucket is full (rows_limit bounds requests)
    assert limiter.take("c", 1000, now=0.0) == 0.0
    assert limiter.take("c", 1, now=0.0) > 0


def test_cursor_round_trip_and_garbage():
    key = ("a/b", "ü", "vpc\x00")
    assert decode_cursor(encode_cursor(key)) == key
    for garbage in ("", "!!!", encode_cursor(("a", "b"))[:-2]):
        with pytest.raises(ValueError):
            decode_cursor(garbage)


def test_page_sorting_and_cursor():
    sums = {("b", "x", "v"): [1, 2], ("a", "z", "v"): [3, 4], ("a", "y", "w"): [5, 6]}
    rows, last = _page(sums, 7, None, None)
    assert [(r["src_app"], r["dest_app"]) for r in rows] == [("a", "y"), ("a", "z"), ("b", "x")]
    assert last is None and rows[0] == {
        "src_app": "a", "dest_app": "y", "vpc_id": "w", "bytes_tx": 5, "bytes_rx": 6, "hour": 7,
    }  # fmt: skip
    first, last = _page(sums, 7, 2, None)
    assert len(first) == 2 and last == ("a", "z", "v")
    rest, last = _page(sums, 7, 2, last)
    assert [r["src_app"] for r in rest] == ["b"] and last is None
