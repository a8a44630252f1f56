"""The command line: validate, run refusing bad files, plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

BAD = """
[sources.cpu]
type = "sytem"
[sources.gen]
type = "generate"
interval = 5
[sinks.out]
type = "console"
inputs = ["gen", "cpu2"]
token = "${API_TOKEN}"
"""


def test_validate_accepts_the_demo() -> None:
    r = run_cli("validate", str(REPO / "examples" / "system.toml"))
    assert r.returncode == 0, r.stderr
    assert "valid (2 sources, 1 processors, 2 sinks)" in r.stdout
    assert "source    host (system)" in r.stdout


def test_validate_reports_every_error_and_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(BAD)
    r = run_cli("validate", str(f), env={"API_TOKEN": "s3cr3t-value-xyz"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "sources.cpu.type: unknown source type 'sytem'; did you mean 'system'?" in r.stderr
    assert "sources.gen.interval: expected a duration string such as" in r.stderr
    assert "sinks.out.inputs: unknown input 'cpu2'; did you mean 'cpu'?" in r.stderr
    assert "sinks.out.token: unknown key 'token'" in r.stderr
    assert "4 error(s)" in r.stderr
    assert "s3cr3t-value-xyz" not in r.stderr + r.stdout


def test_run_refuses_an_invalid_file_with_the_same_messages(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(BAD)
    r = run_cli("run", str(f), env={"API_TOKEN": "s3cr3t-value-xyz"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "did you mean 'system'?" in r.stderr and "4 error(s)" in r.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = run_cli("validate", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "cannot read" in r.stderr and "No such file" in r.stderr


def test_plugins_lists_builtin_types() -> None:
    r = run_cli("plugins")
    assert r.returncode == 0
    for kind, name in [
        ("source", "system"),
        ("source", "internal"),
        ("source", "generate"),
        ("sink", "console"),
        ("sink", "jsonl"),
        ("processor", "filter"),
        ("processor", "tag"),
    ]:
        assert any(line.split()[:2] == [kind, name] for line in r.stdout.splitlines()), name


def test_validate_never_prints_secret_values(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(f"""
[pipeline]
data_dir = "{tmp_path}"
[sources.gen]
type = "generate"
tags = {{ password = "${{DB_PASSWORD}}" }}
[sinks.out]
type = "console"
inputs = ["gen"]
""")
    r = run_cli("validate", str(f), env={"DB_PASSWORD": "pa55-word-123"})
    assert r.returncode == 0
    assert "pa55-word-123" not in r.stdout + r.stderr


def test_run_failure_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    f = tmp_path / "p.toml"
    f.write_text(f"""
[pipeline]
data_dir = "{tmp_path / "file" / "sub"}"
[sources.gen]
type = "generate"
[sinks.out]
type = "blackhole"
inputs = ["gen"]
""")
    r = run_cli("run", str(f))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "pipeline failed: NotADirectoryError" in r.stderr


@pytest.mark.parametrize(
    "example", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name
)
def test_every_example_validates(example: Path) -> None:
    r = run_cli("validate", str(example))
    assert r.returncode == 0, r.stderr
