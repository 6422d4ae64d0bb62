"""fsapps — open-source call-center middleware for FreeSWITCH, run inside the switch by
mod_python3."""

__version__ = "0.1.0"
