"""The one exception tree: every exception class fsapps defines derives from FsappsError
through one of the bases in fsapps.errors, so a front end maps errors by type."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import fsapps
from fsapps import errors
from fsapps.db.connection import DatabaseUnavailableError
from fsapps.domain.agent_state import IllegalTransition
from fsapps.server.auth import Forbidden, NotAuthorized, Throttled

BASES = (errors.BadInput, errors.NotFound, errors.Conflict, errors.Denied,
         errors.ClientError, errors.Unavailable, errors.InternalError, errors.CallerGone)


def _fsapps_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(fsapps.__path__, "fsapps."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # a module for inside the switch only (imports freeswitch)
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, BaseException) and cls.__module__ == info.name
                    and cls.__module__.startswith("fsapps.")):
                found.append(cls)
    return found


def test_every_fsapps_exception_derives_from_a_base() -> None:
    found = _fsapps_exceptions()
    assert len(found) >= 20  # the walk found the package's exceptions
    outside = [f"{c.__module__}.{c.__qualname__}" for c in found
               if c is not errors.FsappsError and not issubclass(c, BASES)]
    assert outside == []


def test_the_bases_say_what_a_front_end_answers() -> None:
    assert issubclass(DatabaseUnavailableError, errors.Unavailable)  # 503, not 409
    assert issubclass(errors.MigrationError, errors.Unavailable)
    assert issubclass(IllegalTransition, errors.Conflict)
    for cls in (NotAuthorized, Forbidden, Throttled):
        assert issubclass(cls, errors.Denied)
    assert not issubclass(errors.CallerGone, errors.ClientError)
