"""Profile exports: speedscope JSON ("sampled" profiles, one per thread) and collapsed-stack
text (Brendan Gregg's `stack;frames count` lines, as read by flamegraph.pl and speedscope).

speedscope format: https://www.speedscope.app/file-format-schema.json
"""

from __future__ import annotations

from typing import Any

from revopipe_plugins.profiler.sampler import Profile

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def to_collapsed(stacks: dict[str, int]) -> str:
    """One `frame;frame;leaf count` line per stack, sorted; zero counts are left out."""
    lines = []
    for stack, count in sorted(stacks.items()):
        if "\n" in stack or "\r" in stack or not stack:
            raise ValueError(
                f"profiler export: stack {stack!r} is empty or holds a line break; "
                "collapsed-stack text needs one stack per line"
            )
        if count < 0:
            raise ValueError(f"profiler export: stack {stack!r} has negative count {count}")
        if count:
            lines.append(f"{stack} {count}\n")
    return "".join(lines)


def parse_collapsed(text: str) -> dict[str, int]:
    """Read collapsed-stack text back; repeated stacks add up. Blank lines are skipped."""
    stacks: dict[str, int] = {}
    # only \n (and a \r before it) ends a line: frames may hold any other character
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").rstrip(" ")
        if not line:
            continue
        # frames may hold spaces: the count is whatever follows the last one
        stack, sep, count_text = line.rpartition(" ")
        if not sep or not stack or not (count_text.isascii() and count_text.isdigit()):
            raise ValueError(
                f"profiler collapsed text line {n}: {raw!r} is not 'frame;frame;leaf COUNT' "
                "(a stack, one space, a non-negative integer count)"
            )
        stacks[stack] = stacks.get(stack, 0) + int(count_text)
    return stacks


def _split_label(label: str) -> tuple[str, int | None]:
    """`module:func:line` -> (`module:func`, line); other labels are kept whole."""
    fn, sep, line = label.rpartition(":")
    if sep and fn and line.isdigit():
        return fn, int(line)
    return label, None


def to_speedscope(profile: Profile, name: str = "revopipe profile") -> dict[str, Any]:
    """A speedscope file: one sampled profile per thread, weights in samples."""
    frames: list[dict[str, Any]] = []
    frame_index: dict[str, int] = {}
    per_thread: dict[str, tuple[list[list[int]], list[int]]] = {}
    for stack, count in sorted(profile.stacks.items()):
        if count <= 0:
            continue
        thread, *labels = stack.split(";")
        indices = []
        for label in labels:
            idx = frame_index.get(label)
            if idx is None:
                fn, line = _split_label(label)
                frame: dict[str, Any] = {"name": fn}
                file = profile.files.get(fn)
                if file:
                    frame["file"] = file
                if line is not None:
                    frame["line"] = line
                idx = frame_index[label] = len(frames)
                frames.append(frame)
            indices.append(idx)
        samples, weights = per_thread.setdefault(thread, ([], []))
        samples.append(indices)
        weights.append(count)
    profiles: list[dict[str, Any]] = []
    totals: list[int] = []
    for thread, (samples, weights) in sorted(per_thread.items()):
        totals.append(sum(weights))
        profiles.append(
            {
                "type": "sampled",
                "name": thread,
                "unit": "none",
                "startValue": 0,
                "endValue": totals[-1],
                "samples": samples,
                "weights": weights,
            }
        )
    active = max(range(len(totals)), key=totals.__getitem__, default=0)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "exporter": "revopipe",
        "activeProfileIndex": active,
        "shared": {"frames": frames},
        "profiles": profiles,
    }
