"""The loop behind `revopipe top`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.live import Live

from revopipe.top.client import ApiClient, Sample, TopError, locate
from revopipe.top.rates import build_frame
from revopipe.top.view import frame_to_json, render

# Piped output (scripts, tests) has no terminal width; rich would assume 80 columns and
# squeeze the table. Wide enough for every column with long component names.
PIPE_WIDTH = 160


def run_top(
    config: Path | None,
    url: str | None,
    interval: float,
    *,
    once: bool = False,
    as_json: bool = False,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the view; returns the exit code (1 with a message on stderr when no instance
    can be read)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        target = locate(config, url)
        with ApiClient(target, timeout=max(5.0, interval)) as client:
            if once:
                first = client.sample()
                time.sleep(interval)
                frame = build_frame(first, client.sample(), target.url)
                if as_json:
                    print(json.dumps(frame_to_json(frame)), file=out)
                else:
                    _console(out).print(render(frame))
                return 0
            if as_json:
                _json_lines(client, interval, out)
            else:
                _live(client, interval, out)
    except TopError as exc:
        print(f"revopipe top: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _console(out: IO[str]) -> Console:
    terminal = out.isatty()
    width = None if terminal or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(file=out, width=width)


def _json_lines(client: ApiClient, interval: float, out: IO[str]) -> None:
    """One JSON frame per interval, for scripts; stops on Ctrl-C or a lost connection."""
    previous = client.sample()
    while True:
        time.sleep(interval)
        current = client.sample()
        print(
            json.dumps(frame_to_json(build_frame(previous, current, client.target.url))), file=out
        )
        out.flush()
        previous = current


def _live(client: ApiClient, interval: float, out: IO[str]) -> None:
    console = _console(out)
    first = client.sample()  # fails fast (exit 1) if nothing answers
    if not console.is_terminal:
        _batch(client, interval, console, first)
        return
    # SIGTERM unwinds like Ctrl-C, so the terminal is restored (main screen, line mode)
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.signal(signal.SIGTERM, _interrupt)
    frame = build_frame(None, first, client.target.url)
    previous: Sample | None = first
    with (
        Live(
            render(frame, live=True),
            console=console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live,
        _keys() as wait,
    ):
        while not wait(interval):
            try:
                current = client.sample()
            except TopError as exc:
                # Keep the last rows on screen and keep trying: a restarted pipeline may
                # come back (on a new port: look it up again).
                frame = dataclasses.replace(frame, error=str(exc))
                client.target = client.target.relocate()
                previous = None
            else:
                frame = build_frame(previous, current, client.target.url)
                previous = current
            live.update(render(frame, live=True), refresh=True)


def _batch(client: ApiClient, interval: float, console: Console, first: Sample) -> None:
    """Not a terminal (output piped to a file or `less`): a frame per interval, one after
    the other, as `top -b` does."""
    previous = first
    while True:
        time.sleep(interval)
        current = client.sample()
        console.print(render(build_frame(previous, current, client.target.url)))
        console.print()
        console.file.flush()
        previous = current


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], bool]]:
    """A `wait(seconds) -> quit?` that returns early when `q` is pressed. The terminal is
    put in cbreak mode (keys arrive unbuffered, Ctrl-C still interrupts) and restored."""
    if sys.platform == "win32" or not sys.stdin.isatty():

        def sleep(seconds: float) -> bool:
            time.sleep(seconds)
            return False

        yield sleep
        return

    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def wait(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if ready and b"q" in os.read(fd, 64).lower():
                return True
        return False

    tty.setcbreak(fd)
    try:
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
