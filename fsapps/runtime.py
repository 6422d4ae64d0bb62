"""``fsapps.runtime`` — the startup script named in python.conf.xml (``startup-script``).

The name FreeSWITCH is configured with; the runtime itself is :mod:`fsapps.switch.runtime`.
"""

from fsapps.switch.runtime import runtime

__all__ = ["runtime"]
