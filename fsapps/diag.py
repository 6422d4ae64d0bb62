"""``python fsapps.diag [max_digits]`` — the self-test, as an api and as an application.

The name the dialplan (9196) and administrators use; the checks are :mod:`fsapps.switch.diag`.
"""

from fsapps.switch.diag import fsapi, handler

__all__ = ["fsapi", "handler"]
