"""Checks on the DAG described by `inputs`: known names, direction, no cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from revopipe.config.errors import ConfigError, did_you_mean


def check_edges(kinds: Mapping[str, str], inputs: Mapping[str, Sequence[str]]) -> list[ConfigError]:
    """Unknown inputs, a sink used as an input, self-loops."""
    errors = []
    for name, ins in inputs.items():
        where = f"{kinds[name]}s.{name}.inputs"
        for i in ins:
            if i not in kinds:
                known = sorted(n for n, k in kinds.items() if k != "sink")
                errors.append(
                    ConfigError(
                        where,
                        f"unknown input {i!r}{did_you_mean(i, known)}",
                        "inputs name sources or processors: " + (", ".join(known) or "none"),
                    )
                )
            elif kinds[i] == "sink":
                errors.append(
                    ConfigError(
                        where,
                        f"input {i!r} is a sink; sinks produce nothing",
                        "name a source or processor",
                    )
                )
            elif i == name:
                errors.append(ConfigError(where, f"{name!r} lists itself as an input", "remove it"))
    return errors


def find_cycle(inputs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] if the graph has one (self-loops are reported elsewhere)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in inputs}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = GREY
        stack.append(n)
        for m in inputs.get(n, ()):
            if m == n or m not in color:
                continue
            if color[m] == GREY:
                return [*stack[stack.index(m) :], m]
            if color[m] == WHITE and (found := visit(m)):
                return found
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(inputs):
        if color[n] == WHITE and (found := visit(n)):
            # inputs point upstream; show the cycle in data-flow order
            return list(reversed(found))
    return None


def topological_order(inputs: Mapping[str, Sequence[str]]) -> list[str]:
    """Names ordered so that each comes after its inputs (graph must be acyclic)."""
    order: list[str] = []
    done: set[str] = set()

    def visit(n: str) -> None:
        if n in done:
            return
        done.add(n)
        for m in inputs.get(n, ()):
            if m in inputs:
                visit(m)
        order.append(n)

    for n in sorted(inputs):
        visit(n)
    return order
