"""mod_python3 reloads the entry module on every call (``PyImport_ReloadModule`` after the
import, FREESWITCH.md): each call, each directory lookup and each ``python`` api command
searches ``sys.path`` for the module's file, reads its bytecode and runs its body again —
holding Python's global import lock and the module's lock, so under load the callers' threads
queue on them, handing the GIL to one another. Measured in a real switch at 500 agents x 40
calls/s (py-spy, ``make bench-switch --profile``): about a fifth of all the time the switch's
Python held the GIL was in these reloads.

fsapps' entry modules are thin (the work is in modules mod_python3 never reloads), so a reload
has nothing to refresh unless their file changed. ``PyImport_ReloadModule`` calls
``importlib.reload`` by name, so :func:`install` puts :meth:`KeepUnchanged.reload` there: a
module directly under fsapps whose file is unchanged (same size and modification time, looked
at no more than once a second) is handed back as it is — no search, no lock, no body run; an
edited one, and every other module, goes to Python's own reload as before.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from types import ModuleType

# How long an entry module is taken as unchanged without looking at its file again.
CHECK_EVERY_S = 1.0


class KeepUnchanged:
    """``importlib.reload`` for a process whose entry modules are reloaded on every call:
    ``<package>.<name>`` modules are kept while their file is unchanged."""

    def __init__(self, package: str, reload: Callable[[ModuleType], ModuleType]) -> None:
        self.prefix = package + "."
        self.python_reload = reload
        # module name -> ((size, mtime ns) of the file last run, when it was last looked at)
        self.seen: dict[str, tuple[tuple[int, int], float]] = {}

    def reload(self, module: ModuleType) -> ModuleType:
        if self.unchanged(module):
            return module
        return self.python_reload(module)

    def unchanged(self, module: ModuleType) -> bool:
        name = getattr(module, "__name__", "")
        if not name.startswith(self.prefix) or "." in name[len(self.prefix):]:
            return False
        now = time.monotonic()
        seen = self.seen.get(name)
        if seen is not None and now - seen[1] < CHECK_EVERY_S:
            return True
        try:
            stat = os.stat(module.__file__ or "")
        except (OSError, TypeError):
            return False  # no file: let Python's reload say what it says
        file = (stat.st_size, stat.st_mtime_ns)
        self.seen[name] = (file, now)
        # the first reload runs the module as Python would (its file is not known before)
        return seen is not None and seen[0] == file


def install(package: str = "fsapps") -> KeepUnchanged:
    """Make ``importlib.reload`` keep ``package``'s unchanged entry modules (once per
    process; a second call returns the first one's)."""
    current = importlib.reload
    owner = getattr(current, "__self__", None)
    if isinstance(owner, KeepUnchanged) and owner.prefix == package + ".":
        return owner
    keeper = KeepUnchanged(package, current)
    importlib.reload = keeper.reload
    return keeper
