"""A separately packaged plugin, installed with pip, adds a processor a pipeline uses."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO, read_jsonl

PLUGIN = REPO / "tests" / "thirdparty" / "revopipe-scale"


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees the installed revopipe and has revopipe-scale pip-installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--quiet",
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return python


def test_plugin_is_listed(plugin_python: Path) -> None:
    out = subprocess.run(
        [str(plugin_python), "-m", "revopipe", "plugins", "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    plugins = {p["plugin"]: p for p in json.loads(out)}
    assert plugins["scale"]["distribution"] == "revopipe-scale"
    assert plugins["scale"]["types"] == [
        {
            "kind": "processor",
            "type": "scale",
            "description": "multiplies metric values by a factor",
        }
    ]
    assert "generate" in plugins  # built-ins load beside it through the same entry points


def test_pipeline_uses_the_plugin_processor(plugin_python: Path, tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(f"""
[pipeline]
data_dir = "{tmp_path}"
[sources.gen]
type = "generate"
count = 30
batch_size = 10
interval = "0s"
[processors.x10]
type = "scale"
inputs = ["gen"]
factor = 10
unit = "deca"
[sinks.file]
type = "jsonl"
inputs = ["x10"]
path = "out.jsonl"
""")
    subprocess.run(
        [str(plugin_python), "-m", "revopipe", "validate", str(config)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [str(plugin_python), "-m", "revopipe", "run", str(config)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["value"] for r in rows] == [10.0 * i for i in range(30)]
    assert {r["unit"] for r in rows} == {"deca"}


def test_plugin_config_errors_are_reported_like_builtins(
    plugin_python: Path, tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[sources.g]\ntype = "generate"\n[processors.s]\ntype = "scale"\n'
        'inputs = ["g"]\nfactr = 2\n[sinks.o]\ntype = "console"\ninputs = ["s"]\n'
    )
    r = subprocess.run(
        [str(plugin_python), "-m", "revopipe", "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "processors.s.factr: unknown key 'factr'; did you mean 'factor'?" in r.stderr
    assert "processors.s.factor: required key is missing" in r.stderr
