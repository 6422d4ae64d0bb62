"""mod_python3's reload of the entry module on every call (fsapps.reloads): an fsapps entry
module whose file is unchanged is kept as it is (its body does not run again); an edited one
is reloaded as Python would; ordinary imports and other packages are left alone."""

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
def package(tmp_path: Path) -> Iterator[tuple[Path, reloads.KeepUnchanged]]:
    """A package ``keepme`` with an entry module ``entry`` that counts its body's runs in a
    helper module, and the finder for it first on sys.meta_path."""
    root = tmp_path / "keepme"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "runs.py").write_text("count = 0\n")
    (root / "entry.py").write_text("from keepme import runs\nruns.count += 1\nVERSION = 1\n")
    sys.path.insert(0, str(tmp_path))
    finder = reloads.install("keepme")
    try:
        yield root, finder
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "keepme" or n.startswith("keepme.")]:
            del sys.modules[name]


def test_an_unchanged_entry_module_is_kept_across_reloads(
        package: tuple[Path, reloads.KeepUnchanged]) -> None:
    module = load_module("keepme.entry")  # as mod_python3's first call: import, then reload
    runs = sys.modules["keepme.runs"]
    assert runs.count == 2
    for _ in range(50):
        assert load_module("keepme.entry") is module
    assert runs.count == 2  # not run again: nothing changed
    assert module.__file__ and module.__file__.endswith("entry.py")


def test_an_edited_entry_module_is_reloaded(package: tuple[Path, reloads.KeepUnchanged]) -> None:
    root, _ = package
    module = load_module("keepme.entry")
    source = root / "entry.py"
    source.write_text("from keepme import runs\nruns.count += 1\nVERSION = 22\n")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    importlib.invalidate_caches()
    assert load_module("keepme.entry").VERSION == 22
    assert sys.modules["keepme.runs"].count == 3
    assert load_module("keepme.entry") is module
    assert sys.modules["keepme.runs"].count == 3


def test_imports_and_deeper_modules_are_not_its_business(
        package: tuple[Path, reloads.KeepUnchanged]) -> None:
    _, finder = package
    load_module("keepme.entry")
    assert finder.find_spec("keepme.entry", None, None) is None  # an import, not a reload
    assert finder.find_spec("other.entry", None, sys.modules["keepme.entry"]) is None
    assert finder.find_spec("keepme.sub.entry", None, sys.modules["keepme.entry"]) is None


def test_fsapps_installs_it_once() -> None:
    import fsapps

    finders = [f for f in sys.meta_path if isinstance(f, reloads.KeepUnchanged)
               and f.prefix == "fsapps."]
    assert len(finders) == 1
    assert reloads.install(fsapps.__name__) is finders[0]
