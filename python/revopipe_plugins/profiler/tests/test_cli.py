"""`revopipe profile -- COMMAND` end to end: real child processes, real files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from revopipe_plugins.profiler.export import SPEEDSCOPE_SCHEMA, parse_collapsed
from revopipe_plugins.profiler.report import functions_from_stacks
from revopipe_plugins.profiler.tests.clirun import WORKLOAD, profile_cmd, run

pytestmark = pytest.mark.slow


def speedscope_self_shares(doc: dict[str, object]) -> dict[str, float]:
    """Self share per frame name, computed from the file alone (as speedscope would)."""
    frames = doc["shared"]["frames"]  # type: ignore[index]
    own: dict[str, int] = {}
    total = 0
    for p in doc["profiles"]:  # type: ignore[attr-defined]
        for stack, weight in zip(p["samples"], p["weights"], strict=True):
            total += weight
            leaf = frames[stack[-1]]["name"]
            own[leaf] = own.get(leaf, 0) + weight
    return {k: v / total for k, v in own.items()}


def test_hot_function_ranked_first(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    proc = run(
        profile_cmd("--output", str(out), "--", sys.executable, str(WORKLOAD), "2"), tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["$schema"] == SPEEDSCOPE_SCHEMA
    assert {"shared", "profiles", "activeProfileIndex", "exporter", "name"} <= set(doc)
    assert all(p["type"] == "sampled" for p in doc["profiles"])
    shares = speedscope_self_shares(doc)
    ranked = sorted(shares, key=shares.__getitem__, reverse=True)
    assert ranked[0] == "__main__:hot", shares
    assert ranked[1] == "__main__:cold", shares
    assert 0.5 <= shares["__main__:hot"] <= 0.9, shares
    # the table ranks it first too, and the overhead is stated
    table_rows = [line for line in proc.stderr.splitlines() if "__main__:" in line]
    assert "__main__:hot" in table_rows[0], proc.stderr
    assert "sampler overhead:" in proc.stderr and "% of one CPU" in proc.stderr
    assert f"written to {out}" in proc.stderr.replace("\n", "")


def test_collapsed_output_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "x.folded"  # the suffix picks the collapsed format
    proc = run(
        profile_cmd("-q", "-o", str(out), "--", sys.executable, str(WORKLOAD), "1"), tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    stacks = parse_collapsed(text)
    assert stacks and all(n > 0 for n in stacks.values())
    # the workload's own thread under its script; a few samples may land in interpreter
    # start-up or shutdown (site, atexit) instead
    in_script = sum(n for s, n in stacks.items() if s.startswith("MainThread;__main__:<module>:"))
    assert in_script >= 0.9 * sum(stacks.values()), stacks
    # parse(text) written again gives the same text: nothing lost either way
    from revopipe_plugins.profiler.export import to_collapsed

    assert to_collapsed(stacks) == text
    assert functions_from_stacks(stacks)[0].function == "__main__:hot"


def test_every_python_process_is_profiled(tmp_path: Path) -> None:
    out = tmp_path / "two.txt"
    proc = run(
        profile_cmd("-q", "-o", str(out), "--", sys.executable, str(WORKLOAD), "1", "--spawn"),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    stacks = parse_collapsed(out.read_text())
    pids = {s.split(" ", 2)[1] for s in stacks if s.startswith("pid ")}
    assert len(pids) == 2, sorted(stacks)[:5]


def test_forked_multiprocessing_worker_reports_its_own_samples(tmp_path: Path) -> None:
    # the worker ends with os._exit, under a second: neither atexit nor a checkpoint runs
    code = (
        "import multiprocessing as mp, time\n"
        "def worker_burn():\n"
        "    end = time.monotonic() + 0.8\n"
        "    while time.monotonic() < end: pass\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('fork').Process(target=worker_burn)\n"
        "    p.start(); p.join()\n"
    )
    out = tmp_path / "fork.txt"
    proc = run(profile_cmd("-q", "-o", str(out), "--", sys.executable, "-c", code), tmp_path)
    assert proc.returncode == 0, proc.stderr
    stacks = parse_collapsed(out.read_text())
    burning = {s.split(" ", 2)[1] for s in stacks if ":worker_burn:" in s}
    assert len(burning) == 1, sorted(stacks)
    parent = {s.split(" ", 2)[1] for s in stacks if "BaseProcess.join" in s}
    assert burning != parent
