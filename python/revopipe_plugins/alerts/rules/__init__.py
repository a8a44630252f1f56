"""Alert rule conditions: a small PromQL-flavoured language over `aggregate`'s output.

Parsed into an immutable tree (`parse`, never `eval`) and evaluated against the latest
aggregated values (`evaluate(expr, Snapshot)`).

Grammar (lowest precedence first; binary operators are left-associative)::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := cmp_expr (("and" | "unless") cmp_expr)*
    cmp_expr   := add_expr ((">" | ">=" | "<" | "<=" | "==" | "!=") add_expr)*
    add_expr   := mul_expr (("+" | "-") mul_expr)*
    mul_expr   := unary (("*" | "/") unary)*
    unary      := ("-" | "+") unary | primary
    primary    := NUMBER | "(" or_expr ")" | stat "(" selector ")"
                | "error_ratio" "(" selector "," selector ")"
                | "predict_linear" "(" stat "(" selector ")" "," DURATION "," DURATION ")"
                | ("sum" | "max" | "min" | "avg") ("by" | "without") "(" labels? ")" "(" or_expr ")"
    stat       := value | last | rate | mean | min | max | sum | count | distinct | pNN
    selector   := metric ("{" matcher ("," matcher)* "}")?
    matcher    := label ("=" | "!=" | "=~" | "!~") STRING
    metric     := NAME | STRING          NAME = [A-Za-z_][A-Za-z0-9_.:]*
    DURATION   := a quoted duration: "90s", "1h", "1h30m"
    # comments run from '#' to the end of the line

Statistics name the series `aggregate` emits: `rate(m)` reads `m.rate`, `p99(m)` reads
`m.p99`, `p99.9(m)` (or `p99_9(m)`) reads `m.p99_9`; `value(m)` reads the series named `m`
itself (for un-aggregated gauges, or a full name such as `value(m.p99_9)`). Histograms have
count, rate, sum, min, max, mean, pNN; counters sum (increase) and rate; gauges last, min,
max; sets distinct. `sum`/`min`/`max` followed by `by`/`without` is aggregation, followed by
`(` a statistic.

Matchers: `=` / `!=` compare exactly, `=~` / `!~` are regular expressions anchored at both
ends; an absent label reads as "".

Semantics (a value is a set of series, label set -> number, or a plain number):

- Arithmetic and comparison match series one-to-one on identical label sets; series with no
  partner are dropped; a number applies to every series. Division by zero (or any
  non-finite result) drops that series.
- A comparison filters: it keeps the series for which it holds, with the series' value
  (the left one when both sides are series).
- `a and b`: series of `a` whose label set is in `b`; `a unless b`: those not in `b`;
  `a or b`: all of `a`, plus those of `b` whose label set is not in `a`.
- `op by (l, ...) (e)` groups `e`'s series by just those labels; `without (l, ...)` by all
  labels but those; `avg` is the mean of the group.
- `error_ratio(N, D)`: let L be the labels N's matchers name. For each selector, read
  `{metric}.count` if the snapshot has any such series (histogram), else `{metric}.sum`
  (counter increase); keep the series its matchers select, drop the labels in L, and sum
  per remaining label set. The result per label set of D is sum(N) / sum(D), with sum(N)
  = 0 when N has no series there (no errors seen); a label set whose D sum is 0 or absent
  gives no result. E.g. `error_ratio(http.requests{status=~"5.."}, http.requests)` is, per
  route/host/..., the 5xx share of all requests.
- `predict_linear(stat(selector), "window", "horizon")`: per series, the least-squares
  line through its values of the last `window` (as `aggregate` emitted them, one per
  window), read `horizon` after the newest one: `predict_linear(last(disk.util), "1h",
  "4h") >= 1` is "full within 4 hours at the last hour's pace". A series needs two values
  in the window to give a result. The snapshot keeps past values only for the series a
  predict_linear selects (from its first evaluation on), at most `RING_SAMPLES` (256) per
  series, spread over the window; all other series keep just their latest value.
- Missing data gives no series, so the condition simply does not hold.

The condition holds for the label sets in the result; each carries its value for
templating (`{{ $value }}`).
"""

from revopipe_plugins.alerts.rules.evaluate import RING_SAMPLES, Snapshot, evaluate
from revopipe_plugins.alerts.rules.parse import (
    Aggregate,
    Arith,
    Compare,
    ErrorRatio,
    Expr,
    Matcher,
    Number,
    PredictLinear,
    RuleSyntaxError,
    Selector,
    SetOp,
    Stat,
    parse,
    unparse,
)

__all__ = [
    "RING_SAMPLES",
    "Aggregate",
    "Arith",
    "Compare",
    "ErrorRatio",
    "Expr",
    "Matcher",
    "Number",
    "PredictLinear",
    "RuleSyntaxError",
    "Selector",
    "SetOp",
    "Snapshot",
    "Stat",
    "evaluate",
    "parse",
    "unparse",
]
