"""Configuration errors: each names the component, the key and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in a pipeline file. `where` is a dotted path such as
    `sources.cpu.interval`; `fix` tells the user what would be accepted."""

    where: str
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        return f"{text} ({self.fix})" if self.fix else text


class ConfigInvalid(Exception):
    """Raised when a pipeline file has errors; carries all of them, not just the first."""

    def __init__(self, errors: Iterable[ConfigError], source: str = "pipeline config") -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.errors)} error(s)"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest choice, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def validation_text(exc: ValidationError, root: str = "<config>") -> str:
    """A pydantic error as one line, `loc: message; ...`, for places that report a nested
    model's problems inside their own message (`root` names an error at the top)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or root}: "
        f"{str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors(include_url=False)
    )
