"""mod_python3's reload of the entry module on every call (fsapps.reloads): an fsapps entry
module whose file is unchanged is kept as it is (its body does not run again); an edited one
is reloaded as Python would; other modules are Python's own business."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakefs.modpython import load_module
from fsapps import reloads


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package ``keepme`` with an entry module ``entry`` that counts its body's runs in a
    helper module, and ``importlib.reload`` keeping it."""
    root = tmp_path / "keepme"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "runs.py").write_text("count = 0\n")
    (root / "entry.py").write_text("from keepme import runs\nruns.count += 1\nVERSION = 1\n")
    (root / "deeper").mkdir()
    (root / "deeper" / "__init__.py").write_text("")
    (root / "deeper" / "leaf.py").write_text("from keepme import runs\nruns.count += 100\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(importlib, "reload", importlib.reload)  # restored afterwards
    reloads.install("keepme")
    try:
        yield root
    finally:
        for name in [n for n in sys.modules if n == "keepme" or n.startswith("keepme.")]:
            del sys.modules[name]


def test_an_unchanged_entry_module_is_kept_across_reloads(package: Path) -> None:
    module = load_module("keepme.entry")  # as mod_python3's first call: import, then reload
    runs = sys.modules["keepme.runs"]
    assert runs.count == 2
    for _ in range(50):
        assert load_module("keepme.entry") is module
    assert runs.count == 2  # not run again: nothing changed
    assert module.__file__ and module.__file__.endswith("entry.py")


def test_an_edited_entry_module_is_reloaded(package: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reloads, "CHECK_EVERY_S", 0.0)  # look at the file on every reload
    module = load_module("keepme.entry")
    assert load_module("keepme.entry") is module
    source = package / "entry.py"
    source.write_text("from keepme import runs\nruns.count += 1\nVERSION = 22\n")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    importlib.invalidate_caches()
    assert load_module("keepme.entry").VERSION == 22
    assert sys.modules["keepme.runs"].count == 3
    assert load_module("keepme.entry").VERSION == 22
    assert sys.modules["keepme.runs"].count == 3


def test_deeper_modules_and_other_packages_reload_as_python_does(package: Path) -> None:
    load_module("keepme.entry")
    deeper = importlib.import_module("keepme.deeper.leaf")
    runs = sys.modules["keepme.runs"]
    before = runs.count
    for _ in range(3):
        importlib.reload(deeper)
    assert runs.count == before + 300


def test_fsapps_keeps_its_entry_modules_once() -> None:
    import fsapps
    import fsapps.nwayacd

    keeper = reloads.install(fsapps.__name__)
    assert reloads.install(fsapps.__name__) is keeper
    load_module("fsapps.nwayacd")
    fsapps.nwayacd.marker = "kept"  # type: ignore[attr-defined]
    assert load_module("fsapps.nwayacd").marker == "kept"
