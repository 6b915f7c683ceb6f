"""The worker's fast JSON path agrees with the stock json module, errors included."""

from __future__ import annotations

import json

import pytest

from pit import _json

SAMPLES = [None, True, 0, -1.5, 10**30, "", 'é\n"\\', [], {}, {"a": [1, {"b": None}], "ü": "ß"}, [[[]]]]


@pytest.mark.parametrize("value", SAMPLES)
def test_dumps_is_compact_stock_json_and_loads_inverts_it(value):
    text = _json.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert _json.loads(text) == value


def test_loads_accepts_surrounding_whitespace_and_rejects_trailing_garbage():
    assert _json.loads(' {"a": 1}\n') == {"a": 1}
    for bad in ["", "{", "[1] x", "nan"]:
        with pytest.raises(ValueError):
            _json.loads(bad)


def test_dumps_rejects_what_json_cannot_carry():
    cyclic: list = []
    cyclic.append(cyclic)
    for bad, error in [({1}, TypeError), (float("nan"), ValueError), (cyclic, ValueError)]:
        with pytest.raises(error):
            _json.dumps(bad)


def test_a_failed_encoding_leaves_no_false_cycle_behind():
    value = {"a": [{"b": {1, 2}}]}
    with pytest.raises(TypeError):
        _json.dumps(value)
    value["a"][0]["b"] = [1, 2]
    assert _json.dumps(value) == '{"a":[{"b":[1,2]}]}'
