"""Running `revopipe profile` as a user would, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKLOAD = Path(__file__).with_name("workload.py")
TIMEOUT = 120


def profile_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "revopipe", "profile", *args]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
