"""Rankings from collapsed stacks, the child's dump format, merging, and the bootstrap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from revopipe_plugins.profiler.bootstrap import DUMP_FORMAT as BOOT_FORMAT
from revopipe_plugins.profiler.cli import INJECT_DIR, child_env, output_format
from revopipe_plugins.profiler.report import (
    DUMP_FORMAT,
    dump,
    functions_from_stacks,
    load,
    merge,
    top_table,
)
from revopipe_plugins.profiler.sampler import Profile, Sampler


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def recurse(n: int) -> None:
    if n:
        recurse(n - 1)
    else:
        spin(0.3)


def real_window() -> Profile:
    sampler = Sampler(rate_hz=200)
    with sampler:
        t = threading.Thread(target=recurse, args=(5,), name="rec")
        t.start()
        t.join(30)
    return sampler.window()


def test_rankings_from_text_match_the_samplers() -> None:
    profile = real_window()
    assert profile.total_samples > 0
    assert functions_from_stacks(profile.stacks) == profile.functions
    # recursion counts once per sample in total, so total share never exceeds 1
    rec = next(f for f in profile.functions if f.function.endswith(":recurse"))
    assert rec.total_share <= 1.0


label = st.sampled_from(["m:a:1", "m:b:2", "m:a:3", "n:c:4", "plain"])
stacks_st = st.dictionaries(
    st.tuples(st.sampled_from(["T1", "T2"]), st.lists(label, min_size=1, max_size=5)).map(
        lambda t: ";".join([t[0], *t[1]])
    ),
    st.integers(min_value=1, max_value=1000),
    max_size=15,
)


@given(stacks_st)
def test_function_shares_against_a_reference(stacks: dict[str, int]) -> None:
    total = sum(stacks.values())

    def fn(lbl: str) -> str:
        return lbl.rsplit(":", 1)[0] if lbl != "plain" else "plain"

    stats = {s.function: s for s in functions_from_stacks(stacks)}
    for name in {fn(lbl) for s in stacks for lbl in s.split(";")[1:]}:
        own = sum(n for s, n in stacks.items() if fn(s.split(";")[-1]) == name)
        tot = sum(n for s, n in stacks.items() if name in {fn(x) for x in s.split(";")[1:]})
        assert stats[name].self_samples == own
        assert stats[name].total_samples == tot
        assert stats[name].total_share == pytest.approx(tot / total)
    assert sum(s.self_samples for s in stats.values()) == total


def test_dump_load_round_trip_and_merge() -> None:
    profile = real_window()
    again = load(json.loads(json.dumps(dump(profile))))
    assert again.stacks == profile.stacks and again.functions == profile.functions
    assert again.files == profile.files and again.ticks == profile.ticks
    assert again.overhead == pytest.approx(profile.overhead)
    both = merge([profile, again], ["pid 1 ", "pid 2 "])
    assert both.total_samples == 2 * profile.total_samples
    assert all(s.startswith(("pid 1 ", "pid 2 ")) for s in both.stacks)
    assert [f.function for f in both.functions] == [f.function for f in profile.functions]
    same = merge([profile, again])
    assert same.stacks == {k: 2 * v for k, v in profile.stacks.items()}
    assert merge([]).total_samples == 0
    assert DUMP_FORMAT == BOOT_FORMAT


def test_load_rejects_foreign_data() -> None:
    with pytest.raises(ValueError, match="not a revopipe profile"):
        load({"format": "pprof"})
    with pytest.raises(ValueError, match="incomplete"):
        load({"format": DUMP_FORMAT, "stacks": {}})


def test_table_lists_the_top_functions() -> None:
    profile = real_window()
    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(top_table(profile, top=2, title="top"))
    text = console.export_text()
    assert profile.functions[0].function in text
    assert len([ln for ln in text.splitlines() if ln.startswith("│")]) == 2


@pytest.mark.parametrize(
    ("output", "fmt", "expected"),
    [
        (None, None, "speedscope"),
        ("p.json", None, "speedscope"),
        ("p.txt", None, "collapsed"),
        ("p.FOLDED", None, "collapsed"),
        ("p.txt", "speedscope", "speedscope"),
    ],
)
def test_output_format(output: str | None, fmt: str | None, expected: str) -> None:
    assert output_format(Path(output) if output else None, fmt) == expected


def test_injected_sitecustomize_chains_to_the_shadowed_one(tmp_path: Path) -> None:
    # a program's own sitecustomize still runs, and the injected directory is not on its path
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import builtins\nbuiltins.OWN_SITE = True\n")
    env = child_env(str(tmp_path), 100.0, False)
    env["PYTHONPATH"] += os.pathsep + str(own)
    code = (
        "import sys, builtins, threading\n"
        "print(getattr(builtins, 'OWN_SITE', False))\n"
        f"print({str(INJECT_DIR)!r} in sys.path)\n"
        "print('revopipe' in sys.modules)\n"
        "print(any(t.name.startswith('revopipe.profiler') for t in threading.enumerate()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False", "True"]
    data = json.loads(next(tmp_path.glob("profile-*.json")).read_text())
    assert load(data).rate_hz == 100.0
