"""Profiles as plain data: function rankings from collapsed stacks, a JSON dump that a
profiled child process hands to `revopipe profile`, merging, and the summary table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table

from revopipe_plugins.profiler.sampler import FunctionStats, Profile

DUMP_FORMAT = "revopipe.profile/1"


def _function_of(label: str) -> str:
    # the sampler labels frames `module:qualname:line`; a label without a line is kept whole
    fn, sep, line = label.rpartition(":")
    return fn if sep and fn and line.isdigit() else label


def functions_from_stacks(stacks: Mapping[str, int]) -> tuple[FunctionStats, ...]:
    """Self and total samples per `module:qualname` from collapsed stacks whose first
    element is the thread name; ranked like `Sampler.window()` ranks them."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    total = 0
    for stack, n in stacks.items():
        if n <= 0:
            continue
        total += n
        labels = stack.split(";")[1:]
        if not labels:
            continue
        leaf = _function_of(labels[-1])
        self_counts[leaf] = self_counts.get(leaf, 0) + n
        # recursion counts a function once per sample for its total
        for fn in {_function_of(label) for label in labels}:
            total_counts[fn] = total_counts.get(fn, 0) + n
    stats = [
        FunctionStats(
            function=fn,
            self_samples=self_counts.get(fn, 0),
            total_samples=tot,
            self_share=self_counts.get(fn, 0) / total if total else 0.0,
            total_share=tot / total if total else 0.0,
        )
        for fn, tot in total_counts.items()
    ]
    stats.sort(key=lambda s: (-s.self_samples, -s.total_samples, s.function))
    return tuple(stats)


def dump(profile: Profile) -> dict[str, Any]:
    """The profile as JSON-ready data (functions are recomputed on load)."""
    return {
        "format": DUMP_FORMAT,
        "start_ns": profile.start_ns,
        "end_ns": profile.end_ns,
        "rate_hz": profile.rate_hz,
        "ticks": profile.ticks,
        "total_samples": profile.total_samples,
        "idle_samples": profile.idle_samples,
        "sampler_cpu_s": profile.sampler_cpu_s,
        "stacks": profile.stacks,
        "files": profile.files,
    }


def load(data: Mapping[str, Any]) -> Profile:
    """A profile from `dump()` output; ValueError names what is wrong."""
    if data.get("format") != DUMP_FORMAT:
        raise ValueError(
            f"profiler: not a revopipe profile dump (format {data.get('format')!r}, "
            f"expected {DUMP_FORMAT!r})"
        )
    try:
        stacks = {str(k): int(v) for k, v in data["stacks"].items()}
        start_ns, end_ns = int(data["start_ns"]), int(data["end_ns"])
        cpu_s = float(data["sampler_cpu_s"])
        wall = (end_ns - start_ns) / 1e9
        return Profile(
            start_ns=start_ns,
            end_ns=end_ns,
            rate_hz=float(data["rate_hz"]),
            ticks=int(data["ticks"]),
            total_samples=sum(v for v in stacks.values() if v > 0),
            idle_samples=int(data["idle_samples"]),
            stacks=stacks,
            functions=functions_from_stacks(stacks),
            files={str(k): str(v) for k, v in data.get("files", {}).items()},
            sampler_cpu_s=cpu_s,
            overhead=cpu_s / wall if wall > 0 else 0.0,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"profiler: incomplete profile dump ({exc!r})") from None


def merge(profiles: Iterable[Profile], thread_prefixes: Iterable[str] | None = None) -> Profile:
    """One profile adding up several (successive windows, or processes: give each a
    `thread_prefixes` entry such as 'pid 123 ' so their threads stay apart).

    `overhead` is the summed sampler CPU over the merged wall span: for concurrent
    processes that is CPUs' worth, not a per-process fraction."""
    items = list(profiles)
    prefixes = list(thread_prefixes) if thread_prefixes is not None else [""] * len(items)
    if len(prefixes) != len(items):
        raise ValueError("profiler merge: one thread prefix per profile is needed")
    if not items:
        return Profile(0, 0, 0.0, 0, 0, 0, {}, ())
    stacks: dict[str, int] = {}
    files: dict[str, str] = {}
    for p, prefix in zip(items, prefixes, strict=True):
        for stack, n in p.stacks.items():
            key = prefix + stack
            stacks[key] = stacks.get(key, 0) + n
        for fn, path in p.files.items():
            files.setdefault(fn, path)
    start_ns = min(p.start_ns for p in items)
    end_ns = max(p.end_ns for p in items)
    cpu_s = sum(p.sampler_cpu_s for p in items)
    wall = (end_ns - start_ns) / 1e9
    return Profile(
        start_ns=start_ns,
        end_ns=end_ns,
        rate_hz=max(p.rate_hz for p in items),
        ticks=sum(p.ticks for p in items),
        total_samples=sum(v for v in stacks.values() if v > 0),
        idle_samples=sum(p.idle_samples for p in items),
        stacks=stacks,
        functions=functions_from_stacks(stacks),
        files=files,
        sampler_cpu_s=cpu_s,
        overhead=cpu_s / wall if wall > 0 else 0.0,
    )


def top_table(profile: Profile, top: int = 20, title: str | None = None) -> Table:
    """The top functions by self share, with total share and sample counts."""
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("self %", justify="right")
    table.add_column("total %", justify="right")
    table.add_column("self", justify="right", style="dim")
    table.add_column("function")
    table.add_column("file", style="dim", overflow="fold")
    for i, fs in enumerate(profile.functions[:top], 1):
        table.add_row(
            str(i),
            f"{fs.self_share * 100:.1f}",
            f"{fs.total_share * 100:.1f}",
            str(fs.self_samples),
            fs.function,
            profile.files.get(fs.function, ""),
        )
    return table
