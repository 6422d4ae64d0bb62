"""Test-only directory bindings for fakefs (named in ``Switch.xml_bindings``). mod_python3
reloads the binding module on every call, so what a test sets and what the bindings record
lives in :mod:`fakefs_bindings.state`, which is not reloaded."""
