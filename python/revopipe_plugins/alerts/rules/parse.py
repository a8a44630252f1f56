"""Condition text -> immutable expression tree, by a hand-written recursive-descent parser.

Hand-written rather than generated (lark) because the language is small (one token of
lookahead decides every choice), the names `sum`/`min`/`max` are both statistics and
aggregation operators (told apart by whether `by`/`without` follows), and every error must
carry its exact position and a hint tailored to what was expected there; a grammar library
would need about as much code to produce those messages, plus a new dependency.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Literal

from revopipe.config import parse_duration
from revopipe.config.units import format_duration
from revopipe_plugins.aggregate.output import stat_name

MatchOp = Literal["=", "!=", "=~", "!~"]
ArithOp = Literal["+", "-", "*", "/"]
CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]
SetOpName = Literal["and", "or", "unless"]
AggOp = Literal["sum", "max", "min", "avg"]

STATS = ("value", "last", "rate", "mean", "min", "max", "sum", "count", "distinct")
AGG_OPS = ("sum", "max", "min", "avg")
_KEYWORDS = ("and", "or", "unless", "by", "without", "error_ratio", "predict_linear")
_PERCENTILE = re.compile(r"p(\d+(?:[._]\d+)?)")


class RuleSyntaxError(ValueError):
    """A condition that does not parse: where (1-based line/column), what, and a hint."""

    def __init__(
        self, message: str, source: str, offset: int, hint: str = "", rule: str | None = None
    ) -> None:
        self.message = message
        self.source = source
        self.offset = offset
        self.hint = hint
        self.rule = rule
        before = source[:offset]
        self.line = before.count("\n") + 1
        self.column = offset - (before.rfind("\n") + 1) + 1
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"rule {self.rule!r}: " if self.rule else ""
        text = self.source.splitlines()[self.line - 1] if self.source.strip() else ""
        lines = [
            f"{where}{self.message} (line {self.line}, column {self.column})",
            f"  {text}",
            "  " + " " * (self.column - 1) + "^",
        ]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


# --- the tree -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Matcher:
    """`label op "value"`; regexes are anchored at both ends, as in PromQL. An absent
    label reads as "" (so `x=""` matches series without `x`)."""

    label: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True, slots=True)
class Stat:
    """`stat(selector)`: the series named `{metric}.{suffix}` (`value` reads `{metric}`)."""

    stat: str
    selector: Selector

    @property
    def series_name(self) -> str:
        if self.stat == "value":
            return self.selector.metric
        return f"{self.selector.metric}.{self.stat}"


@dataclass(frozen=True, slots=True)
class Number:
    value: float


@dataclass(frozen=True, slots=True)
class ErrorRatio:
    numerator: Selector
    denominator: Selector


@dataclass(frozen=True, slots=True)
class PredictLinear:
    """`predict_linear(stat(selector), "window", "horizon")`: per series, the least-squares
    line through its samples of the last `window` seconds, read `horizon` seconds after
    the newest sample."""

    stat: Stat
    window: float
    horizon: float


@dataclass(frozen=True, slots=True)
class Arith:
    op: ArithOp
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class SetOp:
    op: SetOpName
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Aggregate:
    op: AggOp
    mode: Literal["by", "without"]
    labels: tuple[str, ...]
    expr: Expr


Expr = Number | Stat | ErrorRatio | PredictLinear | Arith | Compare | SetOp | Aggregate


def is_scalar(expr: Expr) -> bool:
    """True when no series is involved: the value is one number, not a set of series."""
    if isinstance(expr, Number):
        return True
    if isinstance(expr, Arith | Compare):
        return is_scalar(expr.left) and is_scalar(expr.right)
    return False


# --- tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.:]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/(){},<>=])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # number, ident, string, op, end
    text: str
    pos: int


def _tokenize(src: str, rule: str | None) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            ch = src[pos]
            hint = ""
            if ch == "%":
                hint = "write percentages as plain numbers in the metric's unit (80, or 0.8)"
            elif ch in "\"'":
                hint = "close the string with a matching quote on the same line"
            elif ch == "&" or ch == "|":
                hint = "use the keywords and / or / unless"
            raise RuleSyntaxError(f"unexpected character {ch!r}", src, pos, hint, rule)
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("end", "", len(src)))
    return toks


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _closest(word: str, options: tuple[str, ...] | list[str]) -> str:
    found = difflib.get_close_matches(word.lower(), options, n=1, cutoff=0.6)
    return f"did you mean {found[0]}?" if found else ""


def _percentile_hint(word: str) -> str:
    digits = re.sub(r"\D", "", word)
    if len(digits) > 2:
        return f"did you mean p{digits[:2]}.{digits[2:]}?"
    return "did you mean p99?"


# --- the parser -----------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str, rule: str | None) -> None:
        self.src = src
        self.rule = rule
        self.toks = _tokenize(src, rule)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def error(self, message: str, tok: _Tok | None = None, hint: str = "") -> RuleSyntaxError:
        t = tok or self.tok
        return RuleSyntaxError(message, self.src, t.pos, hint, self.rule)

    def describe(self, tok: _Tok) -> str:
        return "end of condition" if tok.kind == "end" else repr(tok.text)

    def take(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "ident") and self.tok.text in texts

    def expect(self, text: str, hint: str = "") -> _Tok:
        if self.tok.kind in ("op", "ident") and self.tok.text == text:
            return self.take()
        raise self.error(f"expected {text!r}, found {self.describe(self.tok)}", hint=hint)

    # Precedence, lowest first, as in PromQL: or < and/unless < comparisons < + - < * /
    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise self.error("empty condition", hint="e.g. p99(http.server.duration) > 2")
        expr = self.or_expr()
        if self.tok.kind != "end":
            t = self.tok
            hint = _closest(t.text, ["and", "or", "unless"]) if t.kind == "ident" else ""
            if t.text == ")":
                hint = "this ')' has no matching '('"
            elif not hint:
                hint = "join conditions with and / or / unless"
            raise self.error(f"unexpected {self.describe(t)} after a complete expression", t, hint)
        if is_scalar(expr):
            raise self.error(
                "the condition reads no series", self.toks[0], "e.g. last(system.cpu) > 80"
            )
        return expr

    def set_operand(self, op_tok: _Tok, expr: Expr, side: str) -> Expr:
        if is_scalar(expr):
            raise self.error(
                f"the {side} side of {op_tok.text!r} is a plain number; it needs series",
                op_tok,
            )
        return expr

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.at("or"):
            op = self.take()
            right = self.and_expr()
            left = SetOp(
                "or",
                self.set_operand(op, left, "left"),
                self.set_operand(op, right, "right"),
            )
        return left

    def and_expr(self) -> Expr:
        left = self.compare_expr()
        while self.at("and", "unless"):
            op = self.take()
            right = self.compare_expr()
            name: SetOpName = "and" if op.text == "and" else "unless"
            left = SetOp(
                name, self.set_operand(op, left, "left"), self.set_operand(op, right, "right")
            )
        return left

    def compare_expr(self) -> Expr:
        left = self.add_expr()
        while self.tok.kind == "op" and self.tok.text in (">", ">=", "<", "<=", "==", "!="):
            op: CompareOp = self.take().text  # type: ignore[assignment]
            left = Compare(op, left, self.add_expr())
        if self.tok.kind == "op" and self.tok.text == "=":
            raise self.error("'=' is not a comparison", hint="did you mean ==?")
        return left

    def add_expr(self) -> Expr:
        left = self.mul_expr()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op: ArithOp = self.take().text  # type: ignore[assignment]
            left = Arith(op, left, self.mul_expr())
        return left

    def mul_expr(self) -> Expr:
        left = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op: ArithOp = self.take().text  # type: ignore[assignment]
            left = Arith(op, left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.tok.kind == "op" and self.tok.text in ("-", "+"):
            sign = self.take().text
            operand = self.unary()
            if sign == "+":
                return operand
            if isinstance(operand, Number):
                return Number(-operand.value)
            return Arith("*", Number(-1.0), operand)
        return self.primary()

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "number":
            self.take()
            return Number(float(t.text))
        if t.kind == "op" and t.text == "(":
            self.take()
            expr = self.or_expr()
            self.expect(")", "close the parenthesis")
            return expr
        if t.kind == "ident":
            return self.call()
        if t.kind == "string":
            raise self.error(
                "a string cannot stand alone", hint='quote values inside {label="value"} only'
            )
        raise self.error(
            f"expected a number, '(' or a statistic such as rate(m), found {self.describe(t)}"
        )

    def call(self) -> Expr:
        t = self.take()
        word = t.text
        nxt = self.tok
        if word in AGG_OPS and nxt.kind == "ident" and nxt.text in ("by", "without"):
            return self.aggregate(word)
        if word == "error_ratio":
            self.expect("(", "error_ratio(numerator_selector, denominator_selector)")
            num = self.selector()
            self.expect(",", "error_ratio takes two selectors: (errors{...}, requests{...})")
            den = self.selector()
            self.expect(")", "error_ratio takes exactly two selectors")
            return ErrorRatio(num, den)
        if word == "predict_linear":
            return self.predict_linear()
        called = nxt.kind == "op" and nxt.text == "("
        if not called and word not in STATS and _PERCENTILE.fullmatch(word) is None:
            raise self.error(
                f"{word!r} is not a statistic",
                t,
                f"read a series through a statistic: last({word}), rate({word}), p99({word}), ...",
            )
        stat = self.stat_word(t)
        if not called:
            raise self.error(
                f"expected '(' after {word!r}",
                nxt,
                f'a statistic reads a series: {word}(metric{{label="value"}})',
            )
        self.take()
        if self.tok.kind not in ("ident", "string"):
            hint = f"{word}(...) takes a metric selector"
            if word in AGG_OPS:
                hint += f"; to aggregate an expression write {word} by (label) (expr)"
            raise self.error(f"expected a metric name, found {self.describe(self.tok)}", hint=hint)
        start = self.tok
        sel = self.selector()
        if self.at("("):
            hint = f"{word}(...) takes a metric selector, not an expression"
            if word in AGG_OPS:
                hint += f"; to aggregate write {word} by (label) (expr)"
            raise self.error(f"{sel.metric!r} is not a metric name here", start, hint)
        if not (self.tok.kind == "op" and self.tok.text == ")"):
            hint = f"{word}(...) takes one selector"
            if self.tok.text in ("by", "without"):
                hint = f"write {self.tok.text} before the parentheses: sum by (label) (expr)"
            raise self.error(f"expected ')', found {self.describe(self.tok)}", hint=hint)
        self.take()
        return Stat(stat, sel)

    def predict_linear(self) -> PredictLinear:
        usage = 'predict_linear(last(metric{...}), "1h", "4h")'
        self.expect("(", usage)
        first = self.tok
        inner = self.primary() if first.kind == "ident" else None
        if not isinstance(inner, Stat):
            raise self.error(
                "predict_linear needs a statistic of a selector first", first, f"e.g. {usage}"
            )
        self.expect(",", f"predict_linear takes a statistic, a window and a horizon: {usage}")
        window = self.duration("window", usage)
        if window <= 0:
            raise self.error("the window must be above zero", self.toks[self.i - 1])
        self.expect(",", f"predict_linear takes a statistic, a window and a horizon: {usage}")
        horizon = self.duration("horizon", usage)
        self.expect(")", f"predict_linear takes exactly three arguments: {usage}")
        return PredictLinear(inner, window, horizon)

    def duration(self, what: str, usage: str) -> float:
        t = self.tok
        if t.kind != "string":
            hint = f'quote it: "{t.text}s"' if t.kind == "number" else f"e.g. {usage}"
            raise self.error(
                f"expected the {what} as a quoted duration, found {self.describe(t)}", hint=hint
            )
        try:
            seconds = parse_duration(_unquote(t.text))
        except ValueError as e:
            raise self.error(f"bad {what}: {e}", t) from None
        self.take()
        return seconds

    def stat_word(self, t: _Tok) -> str:
        word = t.text
        if word in STATS:
            return word
        m = _PERCENTILE.fullmatch(word)
        if m:
            q = float(m.group(1).replace("_", "."))
            if not 0 <= q <= 100:
                raise self.error(f"percentile {word} is outside 0..100", t, _percentile_hint(word))
            return stat_name(q)
        if word == "avg":
            hint = "avg aggregates series: avg by (label) (expr); a histogram's mean is mean(m)"
        elif word.lower().startswith("p") and any(c.isdigit() for c in word):
            hint = _percentile_hint(word)
        elif word in _KEYWORDS:
            hint = f"{word!r} cannot start an expression"
        else:
            hint = _closest(word, [*STATS, "error_ratio", "predict_linear", "p99"])
            if not hint:
                hint = "a series is read through a statistic: " + ", ".join(STATS) + ", pNN"
        raise self.error(f"unknown statistic {word!r}", t, hint)

    def aggregate(self, op: str) -> Expr:
        mode = self.take().text
        self.expect("(", f"{mode} (label, ...)")
        labels: list[str] = []
        while not self.at(")"):
            if self.tok.kind != "ident":
                raise self.error(f"expected a label name, found {self.describe(self.tok)}")
            labels.append(self.take().text)
            if not self.at(")"):
                self.expect(",", "separate labels with commas")
        self.take()
        self.expect("(", f"{op} {mode} (labels) (expression)")
        expr = self.or_expr()
        self.expect(")", "close the parenthesis")
        if is_scalar(expr):
            raise self.error(f"{op} {mode} needs series, not a plain number")
        return Aggregate(op, mode, tuple(labels), expr)  # type: ignore[arg-type]

    def selector(self) -> Selector:
        t = self.tok
        if t.kind == "ident":
            metric = self.take().text
        elif t.kind == "string":
            metric = _unquote(self.take().text)
        else:
            raise self.error(f"expected a metric name, found {self.describe(t)}")
        matchers: list[Matcher] = []
        if self.at("{"):
            self.take()
            while not self.at("}"):
                matchers.append(self.matcher())
                if not self.at("}"):
                    self.expect(",", "separate matchers with commas")
            self.take()
        return Selector(metric, tuple(matchers))

    def matcher(self) -> Matcher:
        t = self.tok
        if t.kind not in ("ident", "string"):
            raise self.error(f"expected a label name, found {self.describe(t)}")
        label = self.take().text if t.kind == "ident" else _unquote(self.take().text)
        op_tok = self.tok
        if not (op_tok.kind == "op" and op_tok.text in ("=", "!=", "=~", "!~")):
            hint = "did you mean =?" if op_tok.text == "==" else "use = != =~ or !~"
            raise self.error(
                f"expected a matcher operator after {label!r}, found {self.describe(op_tok)}",
                hint=hint,
            )
        self.take()
        v = self.tok
        if v.kind != "string":
            raise self.error(
                f"expected a quoted value, found {self.describe(v)}",
                hint=f'quote it: {label}{op_tok.text}"{v.text}"',
            )
        self.take()
        value = _unquote(v.text)
        if op_tok.text in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as e:
                raise self.error(f"bad regular expression: {e}", v) from None
        return Matcher(label, op_tok.text, value)  # type: ignore[arg-type]


def parse(text: str, rule: str | None = None) -> Expr:
    """Parse a condition; raises RuleSyntaxError (naming `rule` if given)."""
    parser = _Parser(text, rule)
    try:
        return parser.parse()
    except RecursionError:
        raise RuleSyntaxError(
            "condition nested too deeply", text, 0, "simplify the parentheses", rule
        ) from None


# --- back to text ---------------------------------------------------------------------

_PREC = {"or": 1, "and": 2, "unless": 2, "cmp": 3, "+": 4, "-": 4, "*": 5, "/": 5}


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _fmt_selector(sel: Selector) -> str:
    name = sel.metric if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:]*", sel.metric) else None
    text = name or _quote(sel.metric)
    if sel.matchers:
        text += "{" + ", ".join(f"{m.label}{m.op}{_quote(m.value)}" for m in sel.matchers) + "}"
    return text


def unparse(expr: Expr) -> str:
    """Canonical text that parses back to an equal tree."""
    return _fmt(expr, 0)


def _fmt(expr: Expr, outer: int) -> str:
    if isinstance(expr, Number):
        v = float(expr.value)
        if math.isinf(v):
            text = "1e999" if v > 0 else "-1e999"
        elif v.is_integer() and abs(v) < 1e15:
            text = str(int(v))
        else:
            text = repr(v)
        return f"({text})" if v < 0 and outer > 0 else text
    if isinstance(expr, Stat):
        word = expr.stat.replace("_", ".") if expr.stat.startswith("p") else expr.stat
        return f"{word}({_fmt_selector(expr.selector)})"
    if isinstance(expr, PredictLinear):
        window, horizon = format_duration(expr.window), format_duration(expr.horizon)
        return f'predict_linear({_fmt(expr.stat, 0)}, "{window}", "{horizon}")'
    if isinstance(expr, ErrorRatio):
        return f"error_ratio({_fmt_selector(expr.numerator)}, {_fmt_selector(expr.denominator)})"
    if isinstance(expr, Aggregate):
        return f"{expr.op} {expr.mode} ({', '.join(expr.labels)}) ({_fmt(expr.expr, 0)})"
    prec = _PREC["cmp" if isinstance(expr, Compare) else expr.op]
    # Left-associative: the right operand needs parentheses at equal precedence.
    text = f"{_fmt(expr.left, prec)} {expr.op} {_fmt(expr.right, prec + 1)}"
    return f"({text})" if prec < outer else text
