"""Tiny mod_python3 apps for the fakefs fidelity tests (tests/test_fakefs_*.py).

Each entry module is imported AND reloaded by the fake mod_python3 on every call, so whatever
must survive a call lives in :mod:`fsapps_testapps.state`, a helper module that is not reloaded.
"""
