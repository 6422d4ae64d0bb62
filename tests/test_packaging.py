"""The wheel (what `pip install --target SITE .` puts into the switch's Python): fsapps with its
Lua scripts, SQL migrations and web pages; no fakefs, tools or tests; and setuptools has no
warning about it ("Package would be ignored")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What a fresh clone does not hold: a build from a copy without them is the build a user gets
# (an old build/lib would add whatever an earlier setup.cfg put there).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                     "__pycache__", ".*_cache", "node_modules")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str]:
    """The wheel's file names and the build's output."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    # PYTHONDONTWRITEBYTECODE makes setuptools warn "byte-compiling is disabled": not ours
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "--verbose", "-w", str(base / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    (wheel,) = (base / "dist").glob("fsapps-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist(), output


def test_the_wheel_holds_fsapps_only(built: tuple[list[str], str]) -> None:
    names, _ = built
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"fsapps"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_holds_the_data_files(built: tuple[list[str], str]) -> None:
    names, _ = built
    for folder, pattern in (("fsapps/store/lua", "*.lua"), ("fsapps/store/lua/include", "*.lua"),
                            ("fsapps/db/schema", "*.sql"), ("fsapps/server/web/static", "*")):
        expected = {str(path.relative_to(ROOT)) for path in (ROOT / folder).glob(pattern)
                    if path.is_file()}
        assert expected, folder
        assert expected <= set(names), sorted(expected - set(names))


def test_setuptools_does_not_warn(built: tuple[list[str], str]) -> None:
    _, output = built
    warnings = [line for line in output.splitlines()
                if "warning" in line.lower() or "would be ignored" in line.lower()]
    assert not warnings, "\n".join(warnings)
