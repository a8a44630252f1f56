"""`revopipe validate` semantics: every error at once, each naming component, key and fix."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revopipe.config.errors import ConfigInvalid
from revopipe.config.load import load_dict, load_text

GOOD = """
[pipeline]
data_dir = "/tmp/x"
[sources.gen]
type = "generate"
interval = "1s"
[processors.t]
type = "tag"
inputs = ["gen"]
add = { env = "prod" }
[sinks.out]
type = "console"
inputs = ["t", "gen"]
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        load_text(text, env=env or {})
    return [str(e) for e in info.value.errors]


def test_valid_config_builds_a_spec_in_topological_order() -> None:
    spec = load_text(GOOD, env={})
    assert spec.order.index("gen") < spec.order.index("t") < spec.order.index("out")
    assert spec.components["out"].inputs == ("t", "gen")
    assert spec.settings.data_dir.as_posix() == "/tmp/x"


def test_unknown_type_suggests_the_closest() -> None:
    errs = errors_of(GOOD.replace('type = "generate"', 'type = "generat"'))
    assert errs == [
        "sources.gen.type: unknown source type 'generat'; did you mean 'generate'? "
        + errs[0].split("? ", 1)[1]
    ]
    assert "known types:" in errs[0]


def test_type_of_another_kind_says_where_it_belongs() -> None:
    errs = errors_of(GOOD.replace('type = "tag"', 'type = "console"'))
    assert any("'console' is a sink type, not a processor type" in e for e in errs)


def test_every_error_is_reported_at_once() -> None:
    text = """
[sources.gen]
type = "generate"
interval = "soon"
batch_size = "many"
[processors.t]
type = "tagg"
inputs = ["gen"]
[sinks.out]
type = "console"
inputs = ["gne", "missing"]
formatt = "json"
[sinks.out2]
type = "console"
"""
    errs = errors_of(text)
    joined = "\n".join(errs)
    assert "sources.gen.interval: expected a duration string such as" in joined
    assert "sources.gen.batch_size:" in joined
    assert "processors.t.type: unknown processor type 'tagg'; did you mean 'tag'?" in joined
    assert "sinks.out.inputs: unknown input 'gne'; did you mean 'gen'?" in joined
    assert "sinks.out.inputs: unknown input 'missing'" in joined
    assert "sinks.out.formatt: unknown key 'formatt'; did you mean 'format'?" in joined
    assert "sinks.out2.inputs: required key is missing" in joined
    assert len(errs) == 7


def test_cycle_is_reported_with_its_path() -> None:
    text = """
[sources.gen]
type = "generate"
[processors.a]
type = "tag"
inputs = ["gen", "c"]
[processors.b]
type = "tag"
inputs = ["a"]
[processors.c]
type = "tag"
inputs = ["b"]
[sinks.out]
type = "console"
inputs = ["c"]
"""
    errs = errors_of(text)
    assert len(errs) == 1
    assert "cycle: " in errs[0]
    cycle = errs[0].split("cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_structure_errors() -> None:
    errs = errors_of(
        'sourcs = 1\n[sources.gen]\ntype = "generate"\ninputs = ["x"]\n'
        '[sinks.s]\ntype = "console"\ninputs = ["s"]\n'
    )
    joined = "\n".join(errs)
    assert "sourcs: unknown top-level table; did you mean 'sources'?" in joined
    assert "sources.gen.inputs: sources take no inputs" in joined
    assert "sinks.s.inputs: input 's' is a sink" in joined


def test_sink_as_input_and_duplicate_names() -> None:
    errs = errors_of(
        '[sources.x]\ntype = "generate"\n[sinks.x]\ntype = "console"\ninputs = ["x"]\n'
    )
    assert any("name 'x' is already used by a source" in e for e in errs)


def test_toml_syntax_error_is_one_clear_error() -> None:
    errs = errors_of("[sources.gen\ntype = 1")
    assert len(errs) == 1 and errs[0].startswith("not valid TOML:")
    assert "line 1" in errs[0]


def test_env_interpolation_and_missing_variable() -> None:
    spec = load_text(GOOD.replace('"prod"', '"${ENV_NAME}"'), env={"ENV_NAME": "staging"})
    assert spec.components["t"].config.add == {"env": "staging"}  # type: ignore[attr-defined]
    errs = errors_of(GOOD.replace('"prod"', '"${NOPE}"'))
    assert errs == [
        "processors.t.add.env: environment variable NOPE is not set "
        "(export NOPE, or write ${NOPE:-default})"
    ]
    spec = load_text(GOOD.replace('"prod"', '"${NOPE:-dflt}"'), env={})
    assert spec.components["t"].config.add == {"env": "dflt"}  # type: ignore[attr-defined]


def test_interpolated_secrets_never_appear_in_errors() -> None:
    text = GOOD.replace('interval = "1s"', 'interval = "${SECRET_TOKEN}"')
    errs = errors_of(text, env={"SECRET_TOKEN": "hunter2-very-secret"})
    assert errs and all("hunter2" not in e for e in errs)
    assert "***" in "\n".join(errs)


def test_interpolated_value_cannot_break_toml_structure() -> None:
    spec = load_text(GOOD.replace('"prod"', '"${V}"'), env={"V": 'a"\nb = "c'})
    assert spec.components["t"].config.add == {"env": 'a"\nb = "c'}  # type: ignore[attr-defined]


def test_no_source_is_an_error() -> None:
    assert any("no source" in e for e in errors_of("[pipeline]\nname = 'x'\n"))


# -- property: arbitrary config shapes produce a validation error or a spec, never a crash --

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
names = st.sampled_from(["gen", "t", "out", "x", "bad name", ""])
types = st.sampled_from(["generate", "tag", "console", "filter", "jsonl", "generat", "", 3])
keys = st.sampled_from(
    [
        "type",
        "inputs",
        "interval",
        "batch_size",
        "add",
        "format",
        "path",
        "when_full",
        "buffer",
        "include",
        "zzz",
    ]
)


def component() -> st.SearchStrategy[Any]:
    value = st.one_of(
        scalars,
        types,
        st.lists(names, max_size=3),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    )
    return st.one_of(scalars, st.dictionaries(keys, value, max_size=6))


configs = st.dictionaries(
    st.sampled_from(["pipeline", "sources", "processors", "sinks", "other"]),
    st.one_of(
        scalars,
        st.dictionaries(names, component(), max_size=4),
        st.dictionaries(st.sampled_from(["data_dir", "name", "drain_timeout"]), scalars),
    ),
    max_size=5,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_random_configs_never_crash(data: dict[str, Any]) -> None:
    try:
        spec = load_dict(data)
    except ConfigInvalid as exc:
        assert exc.errors
        for e in exc.errors:
            assert e.problem
    else:
        assert spec.order
