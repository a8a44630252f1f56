"""`${ENV_VAR}` interpolation inside string values of a parsed config.

Substituting after parsing (not in the raw text) means a value can never change the
file's structure, whatever quotes or newlines it holds. The values substituted are
remembered so every place which could print them can redact them. Pydantic's lax mode
turns "8080" into an int where a field wants one, so numbers can come from the
environment too."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from revopipe.config.errors import ConfigError

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Interpolator:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env
        self.secrets: set[str] = set()
        self.errors: list[ConfigError] = []

    def apply(self, value: Any, where: str = "") -> Any:
        if isinstance(value, str):
            return self._string(value, where)
        if isinstance(value, Mapping):
            return {k: self.apply(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def _string(self, text: str, where: str) -> str:
        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in self.env:
                value = self.env[name]
            elif default is not None:
                value = default
            else:
                self.errors.append(
                    ConfigError(
                        where,
                        f"environment variable {name} is not set",
                        f"export {name}, or write ${{{name}:-default}}",
                    )
                )
                return ""
            if value and default != value:
                self.secrets.add(value)
            return value

        return _VAR.sub(repl, text)
