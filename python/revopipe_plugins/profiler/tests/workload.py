"""A CPU-bound program for `revopipe profile` tests: `hot` gets 70 % of the work, `cold` 30 %.

    python workload.py SECONDS [EXIT_CODE] [--crash] [--spawn] [--wait-for-signal]

The split is by amount of work (identical loop bodies, 7:3 iterations), not by wall time, so
the shares hold on a loaded machine. `--crash` ends with an uncaught exception, `--spawn`
runs a second Python process doing the same, `--wait-for-signal` prints "ready" and burns
until interrupted.
"""

import subprocess
import sys
import time


def hot(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def cold(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    seconds = float(args[0]) if args else 2.0
    code = int(args[1]) if len(args) > 1 else 0
    child = None
    if "--spawn" in flags:
        child = subprocess.Popen([sys.executable, __file__, str(seconds)])
    if "--wait-for-signal" in flags:
        print("ready", flush=True)
        seconds = 60.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hot(7000)
        cold(3000)
    if child is not None:
        child.wait()
    if "--crash" in flags:
        raise RuntimeError("workload crashed on purpose")
    return code


if __name__ == "__main__":
    sys.exit(main())
