"""Label matchers in Alertmanager/amtool syntax: `name="value"`, `name=value`, `!=`, `=~`,
`!~`, one at a time or as a list `{a="b", c=~"d.*"}`.

Regexes are fully anchored (`=~"web"` matches only `web`, not `webserver`), like
Alertmanager. A label the alert does not have reads as "", so `team=""` matches alerts
without a team and `team!=""` those with one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["MatchOp", "Matcher", "matches_all", "parse_matcher", "parse_matchers"]

# Dots, colons and dashes appear in OpenTelemetry-style names (`http.route`); anything
# stranger can be written quoted: `"my label"="x"`.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
_OPS = ("=~", "!~", "!=", "=")  # longest first so `=~` is not read as `=` then `~...`
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_UNESCAPES = {v: "\\" + k for k, v in _ESCAPES.items()}
_HINT = 'write matchers as name="value", name!="value", name=~"regex" or name!~"regex"'


class MatchOp(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


def quote(value: str) -> str:
    """`value` as a double-quoted matcher string that `parse_matcher` reads back."""
    return '"' + "".join(_UNESCAPES.get(c, c) for c in value) + '"'


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE) and self._regex is None:
            try:
                rx = _compile(self.value)
            except re.error as e:
                raise ValueError(
                    f"matcher {self!s}: invalid regular expression {self.value!r}: {e}; "
                    "fix the regex or use = / != for a literal value"
                ) from None
            object.__setattr__(self, "_regex", rx)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return v == self.value
        if self.op is MatchOp.NE:
            return v != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(v) is not None
        return hit if self.op is MatchOp.RE else not hit

    def __str__(self) -> str:
        name = self.name if _NAME.fullmatch(self.name) else quote(self.name)
        return f"{name}{self.op.value}{quote(self.value)}"


def _compile(value: str) -> re.Pattern[str]:
    return re.compile(f"(?:{value})", re.DOTALL)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class _Reader:
    """A cursor over one matcher text; errors carry the 1-based column."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str, pos: int | None = None) -> ValueError:
        col = (self.pos if pos is None else pos) + 1
        return ValueError(f"matcher {self.text!r}, column {col}: {what}; {_HINT}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1  # the opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                nxt = self.text[self.pos + 1 : self.pos + 2]
                if nxt not in _ESCAPES:
                    raise self.error(
                        f"unknown escape \\{nxt} in a quoted string (use \\\\ for a backslash)"
                    )
                out.append(_ESCAPES[nxt])
                self.pos += 2
                continue
            out.append(c)
            self.pos += 1
        raise self.error('unterminated quoted string: add the closing "', start)

    def name(self) -> str:
        if self.peek() == '"':
            return self.quoted()
        m = _NAME.match(self.text, self.pos)
        if m is None:
            raise self.error("expected a label name")
        self.pos = m.end()
        return m.group()

    def op(self) -> MatchOp:
        for op in _OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return MatchOp(op)
        raise self.error("expected one of = != =~ !~ after the label name")

    def value(self, in_list: bool) -> str:
        if self.peek() == '"':
            return self.quoted()
        # Unquoted: up to the next separator (a regex with `,` or `}` must be quoted).
        start = self.pos
        stops = ",}" if in_list else ""
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            if self.text[self.pos] == '"':
                raise self.error("a quote inside an unquoted value: quote the whole value")
            self.pos += 1
        return self.text[start : self.pos].rstrip()

    def matcher(self, in_list: bool) -> Matcher:
        self.skip_space()
        name = self.name()
        self.skip_space()
        op = self.op()
        self.skip_space()
        value_at = self.pos
        value = self.value(in_list)
        if op in (MatchOp.RE, MatchOp.NRE):
            try:
                return Matcher(name, op, value, _compile(value))
            except re.error as e:
                raise self.error(
                    f"invalid regular expression {value!r}: {e} (fix the regex, or use = / != "
                    "for a literal value)",
                    value_at,
                ) from None
        return Matcher(name, op, value)


def parse_matcher(text: str) -> Matcher:
    """One matcher, e.g. `severity="critical"`, `host=~"web-\\d+"` or `team!=ops`."""
    r = _Reader(text)
    if not text.strip():
        raise r.error("empty matcher")
    m = r.matcher(in_list=False)
    r.skip_space()
    if not r.at_end():
        raise r.error("unexpected text after the matcher")
    return m


def parse_matchers(text: str | Iterable[str]) -> list[Matcher]:
    """A comma-separated list, with or without braces: `{a="b", c=~"d.*"}` or `a=b,c!=d`.
    `{}` is the empty list. Several such texts (e.g. one per CLI argument) give all of
    their matchers."""
    if not isinstance(text, str):
        return [m for t in text for m in parse_matchers(t)]
    r = _Reader(text)
    r.skip_space()
    braced = r.peek() == "{"
    if braced:
        r.pos += 1
    out: list[Matcher] = []
    while True:
        r.skip_space()
        if braced and r.peek() == "}":
            break
        if r.at_end():
            if braced:
                raise r.error("missing the closing }")
            break
        out.append(r.matcher(in_list=True))
        r.skip_space()
        if r.peek() == ",":
            r.pos += 1
            continue
        if braced and r.peek() == "}":
            break
        if not r.at_end():
            raise r.error("expected , between matchers")
    if braced:
        r.pos += 1  # the closing brace
        r.skip_space()
        if not r.at_end():
            raise r.error("unexpected text after the closing }")
    if not out and not braced:
        raise r.error("no matchers")
    return out
