"""revopipe._core, the Rust bindings, checked against the stdlib json module."""

from __future__ import annotations

import json
import math
import struct
import threading
import time
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe import _core

LABELS = ("counter", "gauge", "histogram", "set")

# Any str that UTF-8 can carry: everything but lone surrogates.
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
tag_rows = st.lists(st.tuples(text, text), max_size=4).map(tuple)
values = st.one_of(
    st.floats(),
    st.integers(0, 2**64 - 1).map(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]),
)
rows = st.tuples(text, st.integers(0, 3), values, text, st.integers(-(2**63), 2**63 - 1), tag_rows)


def columns(rs):
    return (
        [r[0] for r in rs],
        bytes(r[1] for r in rs),
        array("d", (r[2] for r in rs)),
        [r[3] for r in rs],
        array("q", (r[4] for r in rs)),
        [r[5] for r in rs],
    )


def expected_line(name, kind, value, unit, ts, tags):
    return {
        "type": "metric",
        "name": name,
        "kind": LABELS[kind],
        "value": value if math.isfinite(value) else None,
        "unit": unit,
        "timestamp": ts,
        "tags": dict(tags),
    }


@given(st.lists(rows, max_size=30))
def test_lines_match_json_dumps(rs):
    data = _core.encode_jsonl(*columns(rs))
    assert isinstance(data, bytes)
    lines = data.decode("utf-8").split("\n")
    assert lines.pop() == ""
    assert len(lines) == len(rs)
    for line, r in zip(lines, rs, strict=True):
        got = json.loads(line)
        want = expected_line(*r)
        assert list(got) == list(want)
        assert got == json.loads(json.dumps(want))
        if want["value"] is not None:
            assert struct.pack("<d", got["value"]) == struct.pack("<d", want["value"])


def test_exact_bytes():
    data = _core.encode_jsonl(
        ("mem.used", 'n"\\\n\x01'),
        b"\x01\x03",
        array("d", [1.5, float("nan")]),
        ("By", "é"),
        array("q", [123, -1]),
        ((("host", "a"), ("k", "v")), ()),
    )
    assert data == (
        b'{"type":"metric","name":"mem.used","kind":"gauge","value":1.5,"unit":"By",'
        b'"timestamp":123,"tags":{"host":"a","k":"v"}}\n'
        b'{"type":"metric","name":"n\\"\\\\\\n\\u0001","kind":"set","value":null,'
        b'"unit":"\xc3\xa9","timestamp":-1,"tags":{}}\n'
    )


def test_empty_batch():
    assert _core.encode_jsonl([], b"", array("d"), [], array("q"), []) == b""


def test_other_sequences_and_buffers():
    names = iter(["a", "b"])
    data = _core.encode_jsonl(
        names,
        bytearray([0, 2]),
        memoryview(array("d", [1.0, 0.0, 2.0]))[::2],
        ["u", "v"],
        array("q", [1, 2]),
        [[["k", "v"]], iter([("x", "y")])],
    )
    got = [json.loads(line) for line in data.splitlines()]
    assert [g["value"] for g in got] == [1.0, 2.0]
    assert [g["tags"] for g in got] == [{"k": "v"}, {"x": "y"}]


def test_repeated_and_fresh_string_objects():
    # The core copies each str object once while it recurs; equal but distinct objects,
    # and objects freed while the columns are read (a generator's), must still all come out
    # right.
    n = 2_000
    shared = "shared.name"
    names = (shared if i % 3 == 0 else f"name{i}" for i in range(n))
    tags = [(("k", str(i)), ("k2", shared)) for i in range(n)]
    data = _core.encode_jsonl(
        names, bytes(n), array("d", range(n)), ["1"] * n, array("q", range(n)), tags
    )
    got = [json.loads(line) for line in data.splitlines()]
    assert [g["name"] for g in got] == [shared if i % 3 == 0 else f"name{i}" for i in range(n)]
    assert [g["tags"] for g in got] == [{"k": str(i), "k2": shared} for i in range(n)]


def test_repeated_calls_reuse_nothing_stale():
    first = _core.encode_jsonl(
        ["a"] * 3, b"\x01" * 3, array("d", [1, 2, 3]), ["u"] * 3, array("q", [1, 2, 3]), [()] * 3
    )
    second = _core.encode_jsonl(["b"], b"\x00", array("d", [9]), ["v"], array("q", [9]), [()])
    assert first.count(b"\n") == 3
    assert second == (
        b'{"type":"metric","name":"b","kind":"counter","value":9.0,"unit":"v",'
        b'"timestamp":9,"tags":{}}\n'
    )


def good_columns():
    return [["a", "b"], b"\x00\x01", array("d", [1, 2]), ["", ""], array("q", [1, 2]), [(), ()]]


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (1, b"\x00\x07", "column 'kinds', row 1: invalid metric kind code 7"),
        (2, array("d", [1]), "column 'values' has 1 rows but 'names' has 2"),
        (3, ["x"], "column 'units' has 1 rows but 'names' has 2"),
        (4, array("q", [1, 2, 3]), "column 'timestamps' has 3 rows but 'names' has 2"),
        (5, [()], "column 'tags' has 1 rows but 'names' has 2"),
    ],
)
def test_value_errors_name_column_and_row(index, bad, message):
    cols = good_columns()
    cols[index] = bad
    with pytest.raises(ValueError, match=message):
        _core.encode_jsonl(*cols)


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (0, ["a", 3], "column 'names', row 1: expected str, got int"),
        (0, "ab", "column 'names': expected a sequence, got str"),
        (1, [0, 1], "column 'kinds'"),
        (2, array("f", [1, 2]), "column 'values'"),
        (2, [1.0, 2.0], "column 'values'"),
        (4, array("i", [1, 2]), "column 'timestamps'"),
        (5, [(), (("k",),)], r"column 'tags', row 1, tag 0: expected a \(key, value\) pair"),
        (5, [(), (("k", 1),)], "column 'tags', row 1, tag 0 value: expected str, got int"),
        (5, [(), "kv"], "column 'tags', row 1: expected a sequence"),
    ],
)
def test_type_errors_name_the_column(index, bad, message):
    cols = good_columns()
    cols[index] = bad
    with pytest.raises(TypeError, match=message):
        _core.encode_jsonl(*cols)


def test_lone_surrogate_is_a_value_error():
    cols = good_columns()
    cols[0] = ["a", "\ud800"]
    with pytest.raises(ValueError, match=r"column 'names', row 1: .*surrogate"):
        _core.encode_jsonl(*cols)


def test_gil_is_released_while_encoding():
    # A thread that needs the GIL to count: while a call holds the GIL throughout it counts
    # at most once (at the call's edges); while the call releases it, it keeps counting.
    n = 200_000
    cols = (
        ["name"] * n,
        bytes(n),
        array("d", range(n)),
        ["1"] * n,
        array("q", range(n)),
        [(("host", "h"),)] * n,
    )
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0)

    t = threading.Thread(target=count)
    t.start()
    progress = []
    try:
        for _ in range(5):
            before = ticks
            _core.encode_jsonl(*cols)
            progress.append(ticks - before)
            if progress[-1] > 5:
                break
    finally:
        done.set()
        t.join()
    assert max(progress) > 5, progress


@given(text, tag_rows, st.randoms())
def test_series_keys_ignore_tag_order(name, tags, rnd):
    shuffled = list(tags)
    rnd.shuffle(shuffled)
    a, b = _core.series_keys([name, name], [tags, tuple(shuffled)])
    assert a == b
    assert 0 <= a < 2**64


def test_series_keys_are_stable_and_unambiguous():
    keys = _core.series_keys(
        ["m", "m", "ab", "a"],
        [(("a", "bc"),), (("ab", "c"),), (), (("b", ""),)],
    )
    assert len(set(keys)) == len(keys)
    # XXH3-64 (seed 0) of b"cpu\xffcore\xff0\xffhost\xffa\xff" etc.: pinned, never to change.
    assert _core.series_keys(
        ["cpu", "cpu", "mem.used", "é"],
        [(), (("host", "a"), ("core", "0")), (("k", "v"),), (("😀", "\n"),)],
    ) == [0x49B0C916E264D9F0, 0xF3F5037DFAF405A8, 0x7D00D316D23C3D8E, 0x66302F5AF1DC3F3B]


def test_series_keys_errors():
    with pytest.raises(ValueError, match="column 'tags' has 1 rows but 'names' has 2"):
        _core.series_keys(["a", "b"], [()])
    with pytest.raises(TypeError, match="column 'names', row 0"):
        _core.series_keys([1], [()])


def test_version():
    assert isinstance(_core.__version__, str)
    assert _core.__version__.count(".") == 2
