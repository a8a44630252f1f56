"""One alert rule as declared in `pipeline.toml`, its annotation templates, and the eleven
default rules (overridable and disableable by name): the nine of the system revopipe
replaces, plus `disk_predicted_full` and `revopipe_unhealthy`.

A rule reads like this::

    [[alerts.rules]]
    name = "checkout_slow"
    expr = 'p99(http.server.request.duration{http.route="/checkout"}) > 1.5'
    for = "2m"
    keep_firing_for = "1m"
    severity = "critical"
    labels = { team = "payments" }
    annotations.summary = "checkout p99 is {{ $value | printf \"%.2f\" }}s"
    repeat_interval = "30m"
    escalate_after = "15m"
    escalate_to = ["oncall-secondary", "eng-manager"]

Templates are a tiny, Prometheus-flavoured language checked when the config is loaded and
rendered without `eval`: `{{ $value }}`, `{{ $labels.http.route }}` (an absent label
renders as ""), `{{ $rule }}`, `{{ $severity }}`, and a `printf` pipe with one C-style
conversion: `{{ $value | printf "%.2f" }}`, `{{ $labels.host | printf "%-10s" }}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from revopipe.config import Duration
from revopipe_plugins.alerts.rules import Expr, parse

__all__ = [
    "DEFAULT_RULES",
    "RuleConfig",
    "Severity",
    "Template",
    "TemplateError",
    "default_rules",
    "merge_rules",
]

Severity = Literal["info", "warning", "critical"]


# --- templates ------------------------------------------------------------------------


class TemplateError(ValueError):
    """A template that does not compile: what, and the 1-based column where."""

    def __init__(self, message: str, source: str, offset: int) -> None:
        self.message = message
        self.source = source
        self.column = offset + 1
        super().__init__(f"{message} (column {self.column}) in template {source!r}")


@dataclass(frozen=True, slots=True)
class _Field:
    var: Literal["value", "label", "rule", "severity"]
    label: str
    fmt: str | None


_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:]*")
# One printf conversion, nothing else that `%` formatting would interpret: no `%(name)s`
# mapping keys, no `*` widths reading extra arguments.
_PRINTF = re.compile(r"((?:%%|[^%])*)%[-+ 0#]?\d{0,3}(?:\.\d{1,3})?[dieEfFgGsxX]((?:%%|[^%])*)")


class Template:
    """A compiled annotation template; `render` never fails on any labels or value."""

    __slots__ = ("_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._parts: list[str | _Field] = []
        pos = 0
        for m in _ACTION.finditer(source):
            self._literal(source[pos : m.start()], pos)
            self._parts.append(self._field(m.group(1), m.start()))
            pos = m.end()
        self._literal(source[pos:], pos)

    def _literal(self, text: str, offset: int) -> None:
        for token in ("{{", "}}"):
            at = text.find(token)
            if at >= 0:
                raise TemplateError(
                    f"unbalanced {token!r}: write actions as {{{{ $value }}}}",
                    self.source,
                    offset + at,
                )
        if text:
            self._parts.append(text)

    def _field(self, body: str, offset: int) -> _Field:
        var_text, _, pipe = body.partition("|")
        var_text = var_text.strip()
        fmt: str | None = None
        if pipe:
            fmt = self._printf(pipe.strip(), offset)
        if var_text == "$value":
            return _Field("value", "", fmt)
        if var_text in ("$rule", "$severity"):
            field = _Field("rule" if var_text == "$rule" else "severity", "", fmt)
        elif var_text.startswith("$labels."):
            name = var_text[len("$labels.") :]
            if not _LABEL_NAME.fullmatch(name):
                raise TemplateError(f"bad label name {name!r}", self.source, offset)
            field = _Field("label", name, fmt)
        else:
            raise TemplateError(
                f"unknown variable {var_text!r}: use $value, $labels.<name>, $rule or $severity",
                self.source,
                offset,
            )
        if fmt is not None and _conv(fmt) != "s":
            raise TemplateError(
                f"{var_text} is text: format it with %s, not {fmt!r}", self.source, offset
            )
        return field

    def _printf(self, pipe: str, offset: int) -> str:
        m = re.fullmatch(r'printf\s+"((?:[^"\\]|\\.)*)"', pipe)
        if not m:
            raise TemplateError(
                f'unsupported pipe {pipe!r}: the only function is printf "<format>"',
                self.source,
                offset,
            )
        fmt = m.group(1).replace('\\"', '"').replace("\\\\", "\\")
        if not _PRINTF.fullmatch(fmt):
            raise TemplateError(
                f"printf format {fmt!r} needs exactly one conversion such as %.2f, %d or %s",
                self.source,
                offset,
            )
        return fmt

    def render(
        self, labels: Mapping[str, str], value: float, rule: str = "", severity: str = ""
    ) -> str:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            v: object
            if part.var == "value":
                v = value
            elif part.var == "label":
                v = labels.get(part.label, "")
            else:
                v = rule if part.var == "rule" else severity
            if part.fmt is None:
                out.append(_plain(v))
            else:
                try:
                    out.append(part.fmt % (v,))
                except (TypeError, ValueError, OverflowError):
                    # a non-finite value through %d: show it rather than drop the message
                    out.append(_plain(v))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _conv(fmt: str) -> str:
    m = re.search(r"%[-+ 0#]?\d{0,3}(?:\.\d{1,3})?([dieEfFgGsxX])", fmt.replace("%%", ""))
    return m.group(1) if m else ""


def _plain(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}" if not v.is_integer() or abs(v) >= 1e16 else str(int(v))
    return str(v)


# --- the rule model -------------------------------------------------------------------


class RuleConfig(BaseModel):
    """One alert rule. `for` is spelled `for` in the file (`for_` in Python)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    expr: str
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    repeat_interval: Duration = 4 * 3600.0
    escalate_after: Duration | None = None
    escalate_to: list[str] = Field(default_factory=list)
    enabled: bool = True

    _condition: Expr = PrivateAttr()
    _templates: dict[str, Template] = PrivateAttr(default_factory=dict)

    @field_validator("repeat_interval")
    @classmethod
    def _positive_repeat(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("repeat_interval must be above zero, e.g. '15m'")
        return v

    @field_validator("escalate_after")
    @classmethod
    def _positive_escalation(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("escalate_after must be above zero, e.g. '15m', or left out")
        return v

    @model_validator(mode="after")
    def _compile(self) -> RuleConfig:
        # RuleSyntaxError is a ValueError whose text names the rule, line and column
        self._condition = parse(self.expr, rule=self.name)
        for key, text in self.annotations.items():
            try:
                self._templates[key] = Template(text)
            except TemplateError as e:
                raise ValueError(f"rule {self.name!r}: annotations.{key}: {e}") from None
        if self.escalate_to and self.escalate_after is None:
            raise ValueError(
                f"rule {self.name!r}: escalate_to is set but escalate_after is not; "
                "add escalate_after = '15m' (or remove escalate_to)"
            )
        return self

    @property
    def condition(self) -> Expr:
        return self._condition

    def render_annotations(self, labels: Mapping[str, str], value: float) -> dict[str, str]:
        return {
            k: t.render(labels, value, self.name, self.severity) for k, t in self._templates.items()
        }

    def overridden(self, changes: Mapping[str, Any]) -> RuleConfig:
        """A copy with `changes` (file spelling: `for`) applied and validated again."""
        if "name" in changes and changes["name"] != self.name:
            raise ValueError(
                f"rule {self.name!r}: an override cannot rename a rule; declare a new rule"
            )
        data = self.model_dump(by_alias=True)
        data.update(changes)
        return RuleConfig.model_validate(data)


# --- defaults ---------------------------------------------------------------------------

_TOTAL_CPU = 'system.cpu.utilization{cpu.logical_number="", cpu.mode=""}'
_HTTP = "http.server.request.duration"
_HTTP_5XX = f'{_HTTP}{{http.response.status_class="5xx"}}'
_BY_ROUTE = "by (http.route, http.request.method)"
_FS = "system.filesystem.utilization"

# Thresholds are ratios 0..1 as the `system` source reports them. The issue gives cooldowns
# only for the CPU rules; the others take the same 15 m (warning) / 10 m (critical), except
# the slow-burning disk trend (1 h).
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "high_cpu_usage",
        # the default inhibit rule lets a critical alert of this group mute its warning
        "labels": {"alertgroup": "cpu"},
        "expr": f"last({_TOTAL_CPU}) > 0.80",
        "for": "5m",
        "severity": "warning",
        "repeat_interval": "15m",
        "annotations": {
            "summary": 'CPU usage is {{ $value | printf "%.2f" }}',
            "description": "Total CPU utilization above 80% for 5 minutes.",
        },
    },
    {
        "name": "critical_cpu_usage",
        "labels": {"alertgroup": "cpu"},
        "expr": f"last({_TOTAL_CPU}) > 0.95",
        "for": "2m",
        "severity": "critical",
        "repeat_interval": "10m",
        "escalate_after": "15m",
        "annotations": {
            "summary": "CPU usage critical: {{ $value }}",
            "description": "Total CPU utilization above 95% for 2 minutes.",
        },
    },
    {
        "name": "high_memory_usage",
        "labels": {"alertgroup": "memory"},
        "expr": 'last(system.memory.utilization{system.memory.state="used"}) > 0.85',
        "for": "5m",
        "severity": "warning",
        "repeat_interval": "15m",
        "annotations": {"summary": "Memory usage is {{ $value }}"},
    },
    {
        "name": "critical_memory_usage",
        "labels": {"alertgroup": "memory"},
        "expr": 'last(system.memory.utilization{system.memory.state="used"}) > 0.95',
        "for": "2m",
        "severity": "critical",
        "repeat_interval": "10m",
        "annotations": {"summary": "Memory usage critical: {{ $value }}"},
    },
    {
        "name": "high_disk_usage",
        "expr": "last(system.filesystem.utilization) > 0.85",
        "for": "10m",
        "severity": "warning",
        "repeat_interval": "15m",
        "annotations": {
            "summary": "Disk {{ $labels.system.filesystem.mountpoint }} is {{ $value }} full"
        },
    },
    {
        "name": "api_high_error_rate",
        "labels": {"alertgroup": "api_error_rate"},
        "expr": f"error_ratio({_HTTP_5XX}, {_HTTP}) > 0.05",
        "for": "3m",
        "severity": "warning",
        "repeat_interval": "15m",
        "annotations": {
            "summary": "{{ $labels.http.request.method }} {{ $labels.http.route }}: "
            "{{ $value }} of requests fail"
        },
    },
    {
        "name": "api_critical_error_rate",
        "labels": {"alertgroup": "api_error_rate"},
        "expr": f"error_ratio({_HTTP_5XX}, {_HTTP}) > 0.15",
        "for": "1m",
        "severity": "critical",
        "repeat_interval": "10m",
        "annotations": {
            "summary": "{{ $labels.http.request.method }} {{ $labels.http.route }}: "
            "{{ $value }} of requests fail"
        },
    },
    {
        "name": "slow_api_response",
        # the mean over all status classes, weighted by request count
        "expr": f"sum {_BY_ROUTE} (sum({_HTTP})) / sum {_BY_ROUTE} (count({_HTTP})) > 2",
        "for": "5m",
        "severity": "warning",
        "repeat_interval": "15m",
        "annotations": {
            "summary": "{{ $labels.http.request.method }} {{ $labels.http.route }}: mean "
            'response time {{ $value | printf "%.2f" }}s'
        },
    },
    {
        "name": "service_down",
        "expr": "last(process.running) == 0",
        "for": "1m",
        "severity": "critical",
        "repeat_interval": "10m",
        "annotations": {
            "summary": "{{ $labels.process.executable.name }} "
            "(pid {{ $labels.process.pid }}) is down"
        },
    },
    {
        # The least-squares trend of each filesystem's utilization over the last hour,
        # read 4 hours ahead (override `expr` to change either). The snapshot keeps past
        # values only for the series this selects, at most RING_SAMPLES each. `for`
        # makes one burst (a big temporary file) or the first minutes of history, when
        # the line rests on a few points, not enough on their own.
        "name": "disk_predicted_full",
        "expr": f'predict_linear(last({_FS}), "1h", "4h") >= 1',
        "for": "15m",
        "severity": "warning",
        "repeat_interval": "1h",
        "annotations": {
            "summary": "Disk {{ $labels.system.filesystem.mountpoint }} "
            "({{ $labels.system.device }}) predicted full within 4h",
            "description": "At the last hour's pace, utilization reaches "
            '{{ $value | printf "%.2f" }} in 4 hours.',
        },
    },
    {
        # From the `internal` source through `aggregate` (internal -> aggregate -> alerts):
        # health is a gauge (1 healthy, 0.5 recovering, 0 failing), whose window minimum
        # catches a failure between two reports; dropped / dead_lettered are cumulative
        # counters, whose `.sum` is the increase in the window. A single crash that
        # recovers within `for` does not fire; a crash loop or sustained loss does.
        "name": "revopipe_unhealthy",
        "expr": "min(revopipe.component.health) < 1"
        " or sum(revopipe.component.dropped) > 0"
        " or sum(revopipe.component.dead_lettered) > 0",
        "for": "2m",
        "severity": "critical",
        "repeat_interval": "10m",
        "annotations": {
            "summary": "revopipe {{ $labels.component.kind }} {{ $labels.component }} "
            "({{ $labels.component.type }}) is failing or losing events",
            "description": "Health below 1 (0 failing, 0.5 recovering) or events dropped or "
            "dead-lettered in the last window; `revopipe top` and /api/v1/health show why.",
        },
    },
)


def default_rules() -> list[RuleConfig]:
    return [RuleConfig.model_validate(d) for d in DEFAULT_RULES]


def merge_rules(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    rules: Iterable[Mapping[str, Any] | RuleConfig] = (),
    defaults: Iterable[RuleConfig] | None = None,
) -> list[RuleConfig]:
    """The enabled rules: the defaults with `overrides` (default name -> changed keys,
    `enabled = false` to turn one off) applied, then the user's own `rules`.

    Raises ValueError naming the offending rule: an override of an unknown default, a user
    rule reusing a name, or any invalid rule."""
    base = default_rules() if defaults is None else list(defaults)
    by_name = {r.name: r for r in base}
    for name, changes in (overrides or {}).items():
        if name not in by_name:
            raise ValueError(
                f"alerts: no default rule {name!r} to override; the defaults are "
                + ", ".join(sorted(by_name))
            )
        by_name[name] = by_name[name].overridden(changes)
    merged = list(by_name.values())
    for item in rules:
        rule = item if isinstance(item, RuleConfig) else RuleConfig.model_validate(item)
        if rule.name in by_name:
            what = "a default rule" if rule.name in {r.name for r in base} else "another rule"
            raise ValueError(
                f"alerts: rule {rule.name!r} has the name of {what}; pick another name, or "
                f"change the default under [alerts.defaults.{rule.name}]"
            )
        by_name[rule.name] = rule
        merged.append(rule)
    return [r for r in merged if r.enabled]
