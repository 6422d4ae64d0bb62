"""fsapps — open-source call-center middleware for FreeSWITCH, run inside the switch by
mod_python3."""

from fsapps import reloads as _reloads

__version__ = "0.1.0"

# mod_python3 reloads the entry module on every call; an unchanged one is kept as it is.
_reloads.install(__name__)
