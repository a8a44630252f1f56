"""DAG building: topological order and cycle detection against a simple reference."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from revopipe.config.graph import find_cycle, topological_order

NODES = [f"n{i}" for i in range(7)]


def kahn_is_acyclic(inputs: dict[str, list[str]]) -> bool:
    indeg = {n: len(set(ins)) for n, ins in inputs.items()}
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for m, ins in inputs.items():
            if n in set(ins):
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
    return seen == len(inputs)


graphs = st.dictionaries(
    st.sampled_from(NODES), st.lists(st.sampled_from(NODES), max_size=3), min_size=1
).map(lambda g: {n: [i for i in ins if i in g and i != n] for n, ins in g.items()})


@given(graphs)
def test_cycle_found_iff_reference_says_so(inputs: dict[str, list[str]]) -> None:
    cycle = find_cycle(inputs)
    assert (cycle is None) == kahn_is_acyclic(inputs)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        # every step of the reported cycle is a real edge, in data-flow order
        for a, b in itertools.pairwise(cycle):
            assert a in inputs[b]


@given(graphs)
def test_topological_order_puts_inputs_first(inputs: dict[str, list[str]]) -> None:
    if find_cycle(inputs) is not None:
        return
    order = topological_order(inputs)
    assert sorted(order) == sorted(inputs)
    pos = {n: i for i, n in enumerate(order)}
    for n, ins in inputs.items():
        assert all(pos[i] < pos[n] for i in ins)
