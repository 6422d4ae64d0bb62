"""mod_python3 reloads the entry module on every call (``PyImport_ReloadModule`` after the
import, FREESWITCH.md): each call, each directory lookup and each ``python`` api command
searches ``sys.path`` for the module's file, reads its bytecode and runs its body again, under
the module's import lock, holding the GIL. Measured in a real switch at 500 agents x 40
calls/s (py-spy, ``make bench-switch --profile``): about a fifth of all the time the switch's
Python held the GIL was spent in these reloads, and callers' threads queued on the import
lock of ``fsapps.nwayacd``.

fsapps' entry modules are thin (the work is in modules mod_python3 never reloads), so a reload
has nothing to refresh unless their file changed. :class:`KeepUnchanged` is a finder placed
first on ``sys.meta_path`` that answers only reloads (``find_spec`` with a ``target``) of the
modules directly under its package: while the module's file is the one last run (same size and
modification time: one ``stat``), it hands back a spec whose loader runs nothing, so the module
stays as it is; after an edit it steps aside and Python reloads the module as before.
Ordinary imports are never its business (no ``target``: it answers None at once).
"""

from __future__ import annotations

import os
import sys
from importlib.abc import Loader
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from types import ModuleType
from typing import Any


class _RunNothing(Loader):
    """The loader of a kept module: the module already holds what its body made."""

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # (reload never creates a module: it reuses the one it has)

    def exec_module(self, module: ModuleType) -> None:
        return None


class KeepUnchanged:
    """Reloads of ``<package>.<name>`` modules keep the module while its file is unchanged."""

    def __init__(self, package: str) -> None:
        self.prefix = package + "."
        self.seen: dict[str, tuple[int, int]] = {}  # module name -> (size, mtime ns) last run

    def find_spec(self, name: str, path: Any = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if target is None or not name.startswith(self.prefix) or "." in name[len(self.prefix):]:
            return None
        filename = getattr(target, "__file__", None)
        if not filename:
            return None
        try:
            stat = os.stat(filename)
        except OSError:
            return None  # gone: let Python say so
        now = (stat.st_size, stat.st_mtime_ns)
        if self.seen.get(name) != now:
            # first reload, or the file was edited: run it again as Python would
            self.seen[name] = now
            return None
        return spec_from_file_location(name, filename, loader=_RunNothing())


def install(package: str = "fsapps") -> KeepUnchanged:
    """Put the finder for ``package`` first on ``sys.meta_path`` (once per process)."""
    for finder in sys.meta_path:
        if isinstance(finder, KeepUnchanged) and finder.prefix == package + ".":
            return finder
    finder = KeepUnchanged(package)
    sys.meta_path.insert(0, finder)
    return finder
