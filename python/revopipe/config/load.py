"""Reading a pipeline file into a validated `PipelineSpec`, collecting every error."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from revopipe.components import Kind
from revopipe.config.errors import ConfigError, ConfigInvalid, did_you_mean
from revopipe.config.graph import check_edges, find_cycle, topological_order
from revopipe.config.interpolate import Interpolator
from revopipe.config.redact import Redactor
from revopipe.config.schema import PipelineSettings
from revopipe.config.spec import ComponentSpec, PipelineSpec
from revopipe.plugins import Registry, default_registry

SECTIONS: dict[str, Kind] = {"sources": "source", "processors": "processor", "sinks": "sink"}
TOP_LEVEL = ("pipeline", *SECTIONS)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def load_file(
    path: str | Path, registry: Registry | None = None, env: Mapping[str, str] | None = None
) -> PipelineSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigInvalid(
            [ConfigError("", f"cannot read {p}: {exc.strerror}", "check the path")], str(p)
        ) from None
    return load_text(text, registry, env, source=str(p))


def load_text(
    text: str,
    registry: Registry | None = None,
    env: Mapping[str, str] | None = None,
    source: str = "pipeline config",
) -> PipelineSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid(
            [ConfigError("", f"not valid TOML: {exc}", "fix the syntax at that line")], source
        ) from None
    return load_dict(data, registry, source=source, env=env)


def _type_name(annotation: Any) -> str:
    args = get_args(annotation)
    if args:
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))


def _pydantic_errors(
    prefix: str, model: type[BaseModel], exc: ValidationError, redactor: Redactor
) -> list[ConfigError]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"])
        where = f"{prefix}.{loc}" if loc else prefix
        kind = err["type"]
        msg = str(err["msg"]).removeprefix("Value error, ")
        field = model.model_fields.get(str(err["loc"][0])) if err["loc"] else None
        fix = ""
        if kind == "extra_forbidden":
            known = sorted(model.model_fields)
            msg = f"unknown key {err['loc'][-1]!r}{did_you_mean(str(err['loc'][-1]), known)}"
            fix = "valid keys: " + ", ".join(known)
        elif kind == "missing":
            msg = "required key is missing"
            if field is not None:
                fix = f"add {err['loc'][-1]} = <{_type_name(field.annotation)}>"
                if field.description:
                    fix += f": {field.description}"
        elif field is not None and field.description and kind != "value_error":
            fix = f"expected {field.description}"
        elif kind != "value_error" and "input" in err:
            got = err["input"]
            fix = f"got {type(got).__name__} {redactor.text(repr(got))}"
        out.append(ConfigError(where, redactor.text(msg), redactor.text(fix)))
    return out


def load_dict(
    data: Mapping[str, Any],
    registry: Registry | None = None,
    *,
    source: str = "pipeline config",
    env: Mapping[str, str] | None = None,
) -> PipelineSpec:
    """Interpolate `${VAR}`s and validate a config mapping; raise `ConfigInvalid` listing
    every problem found."""
    registry = registry or default_registry()
    interpolator = Interpolator(env)
    data = interpolator.apply(data)
    redactor = Redactor(interpolator.secrets)
    errors: list[ConfigError] = list(interpolator.errors)

    for key in data:
        if key not in TOP_LEVEL:
            errors.append(
                ConfigError(
                    key,
                    f"unknown top-level table{did_you_mean(key, TOP_LEVEL)}",
                    "top-level tables: " + ", ".join(TOP_LEVEL),
                )
            )

    raw_settings = data.get("pipeline", {})
    settings = PipelineSettings()
    if not isinstance(raw_settings, Mapping):
        errors.append(ConfigError("pipeline", "must be a table", "write [pipeline]"))
    else:
        try:
            settings = PipelineSettings.model_validate(raw_settings)
        except ValidationError as exc:
            errors += _pydantic_errors("pipeline", PipelineSettings, exc, redactor)

    specs: dict[str, ComponentSpec] = {}
    kinds: dict[str, str] = {}
    inputs: dict[str, list[str]] = {}
    for section, kind in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, Mapping):
            errors.append(
                ConfigError(
                    section,
                    "must be a table of components",
                    f"write [{section}.<name>] with type = ...",
                )
            )
            continue
        for name, raw in table.items():
            where = f"{section}.{name}"
            if not _NAME.match(name):
                errors.append(
                    ConfigError(
                        where, "invalid component name", "use letters, digits, '_', '-' and '.'"
                    )
                )
            if name in kinds:
                errors.append(
                    ConfigError(
                        where,
                        f"name {name!r} is already used by a {kinds[name]}",
                        "component names must be unique across sections",
                    )
                )
                continue
            kinds[name] = kind
            if not isinstance(raw, Mapping):
                errors.append(
                    ConfigError(where, "must be a table", f"write [{where}] with type = ...")
                )
                continue
            raw_inputs = raw.get("inputs", [])
            if kind != "source":
                inputs[name] = (
                    [i for i in raw_inputs if isinstance(i, str)]
                    if isinstance(raw_inputs, list)
                    else []
                )
            elif "inputs" in raw:
                errors.append(
                    ConfigError(
                        f"{where}.inputs",
                        "sources take no inputs",
                        "remove the key, or make this a processor",
                    )
                )
            else:
                inputs[name] = []
            type_name = raw.get("type")
            if not isinstance(type_name, str):
                errors.append(
                    ConfigError(
                        f"{where}.type",
                        "required key is missing" if type_name is None else "must be a string",
                        "known types: " + ", ".join(registry.names(kind)),
                    )
                )
                continue
            ctype = registry.get(kind, type_name)
            if ctype is None:
                problem, fix = registry.unknown_type_message(kind, type_name)
                errors.append(ConfigError(f"{where}.type", problem, fix))
                continue
            model = ctype.cls.Config
            try:
                # The registry rides along so a config can check names resolved through
                # other hooks (e.g. notification channel types) without a global.
                config = model.model_validate(dict(raw), context={"registry": registry})
            except ValidationError as exc:
                errors += _pydantic_errors(where, model, exc, redactor)
                continue
            specs[name] = ComponentSpec(name, kind, ctype.cls, config, tuple(inputs.get(name, ())))

    if not any(k == "source" for k in kinds.values()) and not errors:
        errors.append(
            ConfigError(
                "sources", "the pipeline has no source", "add [sources.<name>] with type = ..."
            )
        )
    errors += check_edges(kinds, {n: i for n, i in inputs.items() if kinds.get(n) != "source"})
    cycle = find_cycle(inputs)
    if cycle:
        first = cycle[0]
        errors.append(
            ConfigError(
                f"{kinds[first]}s.{first}.inputs",
                "cycle: " + " -> ".join(cycle),
                "pipelines are acyclic; remove one of these inputs",
            )
        )
    if errors:
        raise ConfigInvalid(errors, source)
    order = [n for n in topological_order(inputs) if n in specs]
    return PipelineSpec(settings, specs, tuple(order), redactor)
