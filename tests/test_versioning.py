"""Releases: the version has one source (pyproject.toml, read back from the package metadata),
`plunk-sql --version` prints it, and CHANGELOG.md has a section for it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import plunk_sql

ROOT = Path(__file__).resolve().parent.parent


def test_versioning__version_comes_from_the_package_metadata():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert plunk_sql.__version__ == version("plunk-sql") == declared


def test_versioning__cli_prints_the_version():
    out = subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"plunk-sql {plunk_sql.__version__}"


def test_versioning__changelog_has_a_section_for_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"\n## {plunk_sql.__version__} " in changelog
