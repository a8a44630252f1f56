"""Label matchers: amtool syntax table-driven, errors naming text and column, and a
hypothesis round trip against a simple reference parser and matcher."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe_plugins.alerts.routing.matchers import (
    Matcher,
    MatchOp,
    matches_all,
    parse_matcher,
    parse_matchers,
    quote,
)


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('severity="critical"', "severity", "=", "critical"),
        ("severity=critical", "severity", "=", "critical"),
        ('  team != "ops" ', "team", "!=", "ops"),
        ('host=~"web-\\\\d+"', "host", "=~", "web-\\d+"),
        ("host!~db.*", "host", "!~", "db.*"),
        ('http.route="/pay"', "http.route", "=", "/pay"),
        ('a="say \\"hi\\"\\n"', "a", "=", 'say "hi"\n'),
        ('a=""', "a", "=", ""),
        ("a=", "a", "=", ""),
        ('"odd name"="x"', "odd name", "=", "x"),
        ("a=~x{1,2}", "a", "=~", "x{1,2}"),  # a single matcher may hold , unquoted
        ('a="x,y}"', "a", "=", "x,y}"),
    ],
)
def test_parse_one(text: str, name: str, op: str, value: str) -> None:
    m = parse_matcher(text)
    assert (m.name, m.op.value, m.value) == (name, op, value)
    assert parse_matcher(str(m)) == m  # the canonical form reads back


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('{a="b", c=~"d.*"}', [("a", "=", "b"), ("c", "=~", "d.*")]),
        ('a="b",c!=d', [("a", "=", "b"), ("c", "!=", "d")]),
        ("{ a = b , c = d , }", [("a", "=", "b"), ("c", "=", "d")]),
        ("{}", []),
        ('{a="}"}', [("a", "=", "}")]),
    ],
)
def test_parse_list(text: str, expect: list[tuple[str, str, str]]) -> None:
    assert [(m.name, m.op.value, m.value) for m in parse_matchers(text)] == expect


def test_parse_several_texts() -> None:
    got = parse_matchers(['a="b"', '{c="d", e!="f"}'])
    assert [m.name for m in got] == ["a", "c", "e"]


@pytest.mark.parametrize(
    ("text", "column", "hint"),
    [
        ("", 1, "empty matcher"),
        ('="x"', 1, "expected a label name"),
        ("a", 2, "expected one of = != =~ !~"),
        ("a~b", 2, "expected one of"),
        ('a="x', 3, "unterminated quoted string"),
        ('a="\\q"', 4, "unknown escape"),
        ('a=~"("', 4, "invalid regular expression"),
        ('a="b" c', 7, "unexpected text after the matcher"),
        ('a=b"c', 4, "quote inside an unquoted value"),
    ],
)
def test_parse_errors_name_text_and_column(text: str, column: int, hint: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_matcher(text)
    msg = str(err.value)
    assert repr(text) in msg and f"column {column}:" in msg and hint in msg
    assert 'name="value"' in msg  # the fix


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('{a="b"', "missing the closing }"),
        ('{a="b"} x', "unexpected text after the closing }"),
        ('a="b" c="d"', "expected , between matchers"),
        ("", "no matchers"),
    ],
)
def test_list_errors(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        parse_matchers(text)


@pytest.mark.parametrize(
    ("matcher", "labels", "hit"),
    [
        ('a="x"', {"a": "x"}, True),
        ('a="x"', {"a": "xy"}, False),
        ('a=""', {}, True),  # absent reads as ""
        ('a!=""', {}, False),
        ('a!="x"', {}, True),
        ('a=~"web"', {"a": "webserver"}, False),  # fully anchored
        ('a=~"web.*"', {"a": "webserver"}, True),
        ('a=~"a|b"', {"a": "b"}, True),  # alternation stays inside the anchors
        ('a=~"a|b"', {"a": "ab"}, False),
        ('a!~"web.*"', {"a": "db"}, True),
        ('a!~".*"', {}, False),
    ],
)
def test_matches(matcher: str, labels: dict[str, str], hit: bool) -> None:
    assert parse_matcher(matcher).matches(labels) is hit


def test_matches_all() -> None:
    ms = parse_matchers('{a="1", b=~"x|y"}')
    assert matches_all(ms, {"a": "1", "b": "y"})
    assert not matches_all(ms, {"a": "1", "b": "z"})
    assert matches_all([], {})


def test_bad_regex_in_constructor() -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        Matcher("a", MatchOp.RE, "(")


# --- hypothesis: render → parse against a simple reference ---------------------------------

_REF = re.compile(r'^([A-Za-z_][A-Za-z0-9_.:\-]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"$')
_REF_ESC = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\t": "\t", "\\r": "\r"}


def _reference(text: str) -> tuple[str, str, str]:
    m = _REF.match(text)
    assert m is not None
    value = re.sub(r"\\.", lambda e: _REF_ESC[e.group()], m.group(3))
    return m.group(1), m.group(2), value


def _ref_match(name: str, op: str, value: str, labels: dict[str, str]) -> bool:
    v = labels.get(name, "")
    if op == "=":
        return v == value
    if op == "!=":
        return v != value
    hit = re.match(f"^(?:{value})$", v, re.DOTALL) is not None
    return hit if op == "=~" else not hit


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t\r")
)


@given(name=names, op=st.sampled_from(["=", "!="]), value=values, other=values)
def test_roundtrip_against_reference(name: str, op: str, value: str, other: str) -> None:
    text = f"{name}{op}{quote(value)}"
    m = parse_matcher(text)
    assert (m.name, m.op.value, m.value) == _reference(text)
    for labels in ({}, {name: value}, {name: other}):
        assert m.matches(labels) == _ref_match(name, op, value, labels)
    listed = parse_matchers("{" + text + ", " + text + "}")
    assert listed == [m, m]


@given(
    name=names,
    op=st.sampled_from(["=~", "!~"]),
    value=st.from_regex(r"[a-z]{0,3}(\|[a-z](\.\*|[a-z.])?)?", fullmatch=True),  # valid
    subject=st.text(alphabet="abc.", max_size=4),
)
def test_regex_against_reference(name: str, op: str, value: str, subject: str) -> None:
    m = parse_matcher(f"{name}{op}{quote(value)}")
    labels = {name: subject}
    assert m.matches(labels) == _ref_match(name, op, value, labels)
