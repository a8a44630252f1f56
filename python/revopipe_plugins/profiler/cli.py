"""`revopipe profile [options] -- COMMAND...`: run a command with the statistical sampler in
every Python process it starts, then print the hot functions and write the profile.

The sampler is injected through a `sitecustomize.py` put first on PYTHONPATH and switched on
by environment variables (see bootstrap.py), so any Python command works: `python app.py`,
`python -m pkg`, `pytest`, `gunicorn ...`, or a shell script that starts Python. The child's
stdout and stderr pass through untouched; the report goes to stderr. Exit status: the
command's own (128 + N when a signal N killed it), 2 for bad arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

import click
from rich.console import Console

from revopipe_plugins.profiler.bootstrap import ENV_DIR, ENV_IDLE, ENV_RATE
from revopipe_plugins.profiler.export import to_collapsed, to_speedscope
from revopipe_plugins.profiler.report import load, merge, top_table
from revopipe_plugins.profiler.sampler import Profile

INJECT_DIR = Path(__file__).resolve().parent / "_inject"
COLLAPSED_SUFFIXES = (".txt", ".collapsed", ".folded", ".stacks")
DEFAULT_OUTPUT = {"speedscope": "profile.speedscope.json", "collapsed": "profile.collapsed.txt"}


def output_format(output: Path | None, fmt: str | None) -> str:
    """The explicit format, else the one the output's suffix implies, else speedscope."""
    if fmt:
        return fmt
    if output is not None and output.suffix.lower() in COLLAPSED_SUFFIXES:
        return "collapsed"
    return "speedscope"


def child_env(out_dir: str, rate: float, include_idle: bool) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(INJECT_DIR) + (os.pathsep + path if path else "")
    env[ENV_DIR] = out_dir
    env[ENV_RATE] = repr(rate)
    env[ENV_IDLE] = "1" if include_idle else "0"
    return env


def read_profiles(out_dir: Path) -> Profile | None:
    """Every process's profile merged; threads prefixed by pid when there are several."""
    loaded: list[tuple[int, Profile]] = []
    for path in sorted(out_dir.glob("profile-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            loaded.append((int(data.get("pid", 0)), load(data)))
        except (OSError, ValueError) as exc:
            click.echo(f"revopipe profile: skipping unreadable {path.name}: {exc}", err=True)
    if not loaded:
        return None
    loaded.sort(key=lambda item: item[1].start_ns)
    prefixes = [f"pid {pid} " if len(loaded) > 1 else "" for pid, _ in loaded]
    return merge([p for _, p in loaded], prefixes)


@contextlib.contextmanager
def _signals_to(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the child runs: Ctrl-C reaches it from the terminal (same process group), so
    the first one here is only noted and the child decides how to end (its atexit writes the
    profile); a second one, or SIGTERM/SIGHUP, is passed on as SIGTERM."""
    presses = 0

    def on_int(signum: int, frame: FrameType | None) -> None:
        nonlocal presses
        presses += 1
        if presses > 1 and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def forward(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, on_int),
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        signal.SIGHUP: signal.signal(signal.SIGHUP, forward),
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_child(command: Sequence[str], env: dict[str, str]) -> tuple[int, float, float]:
    """Run the command to its end: (exit status as a shell reports it, wall s, child CPU s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(list(command), env=env)
    except OSError as exc:
        raise click.UsageError(f"profile: cannot run {command[0]!r}: {exc.strerror}") from None
    with _signals_to(proc):
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - only if a handler is bypassed
                continue
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (128 - rc if rc < 0 else rc), wall, cpu


def write_output(profile: Profile, path: Path, fmt: str, name: str) -> None:
    if fmt == "collapsed":
        path.write_text(to_collapsed(profile.stacks), encoding="utf-8")
    else:
        path.write_text(json.dumps(to_speedscope(profile, name=name)), encoding="utf-8")


def summary(profile: Profile, wall_s: float, child_cpu_s: float, rate: float) -> str:
    on_cpu = profile.total_samples
    idle = profile.idle_samples
    overhead = profile.sampler_cpu_s / wall_s if wall_s > 0 else 0.0
    of_child = profile.sampler_cpu_s / child_cpu_s if child_cpu_s > 0 else 0.0
    return (
        f"{on_cpu} on-CPU samples ({idle} idle left out) at {rate:g} Hz over {wall_s:.2f} s\n"
        f"sampler overhead: {profile.sampler_cpu_s * 1e3:.1f} ms CPU = "
        f"{overhead * 100:.2f} % of one CPU over the run, "
        f"{of_child * 100:.2f} % of the command's {child_cpu_s:.2f} s CPU time"
    )


@click.command(
    "profile",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 1000),
    default=100.0,
    show_default=True,
    help="samples per second per thread",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="profile file (default profile.speedscope.json, or profile.collapsed.txt)",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["speedscope", "collapsed"]),
    help="file format (default: from the output suffix; .txt/.folded/.collapsed = collapsed)",
)
@click.option("--top", type=click.IntRange(1), default=20, show_default=True, help="rows shown")
@click.option(
    "--include-idle", is_flag=True, help="keep samples of threads blocked in I/O, sleep, locks"
)
@click.option("--quiet", "-q", is_flag=True, help="print no table, only where the file went")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def profile(
    ctx: click.Context,
    rate: float,
    output: Path | None,
    fmt: str | None,
    top: int,
    include_idle: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with a statistical CPU profiler in every Python process it starts.

    \b
        revopipe profile -- python app.py --port 8000
        revopipe profile --rate 250 -o app.txt -- python -m mypkg
        revopipe profile --include-idle -- pytest tests/

    Prints the top functions by self time, the sample count and the sampler's measured
    overhead, writes a speedscope (https://speedscope.app) or collapsed-stack file
    (flamegraph.pl, speedscope), and exits with the command's exit status.
    """
    if not command:
        raise click.UsageError(
            "profile: no command given; put it after '--', e.g. revopipe profile -- python app.py",
            ctx,
        )
    fmt = output_format(output, fmt)
    path = output if output is not None else Path(DEFAULT_OUTPUT[fmt])
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="revopipe-profile-") as tmp:
        status, wall, child_cpu = run_child(command, child_env(tmp, rate, include_idle))
        result = read_profiles(Path(tmp))
    if result is None:
        console.print(
            "[yellow]revopipe profile: no Python process reported a profile.[/] The command "
            "must run Python 3.11+ with site enabled (not -S, -I or -E, which skip the "
            "injected sitecustomize on PYTHONPATH)."
        )
        ctx.exit(status)
    assert result is not None
    try:
        write_output(result, path, fmt, name=" ".join(command))
    except OSError as exc:
        console.print(f"[red]revopipe profile: cannot write {path}: {exc.strerror}[/]")
        ctx.exit(status or 1)
    if not quiet:
        console.print(top_table(result, top, title=f"top {top} functions by self time"))
        console.print(summary(result, wall, child_cpu, rate))
    console.print(f"{fmt} profile written to {path}")
    if status:
        console.print(f"[yellow]the command exited with status {status}[/]")
    ctx.exit(status)
