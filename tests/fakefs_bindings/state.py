"""State shared by the test bindings across mod_python3's reloads: the calls seen and what to
answer. Tests call :func:`reset` first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

CALLS: list[dict[str, Any]] = []
# user id -> {"params": {...}, "variables": {...}, "attributes": {...}}
USERS: dict[str, dict[str, dict[str, str]]] = {}
# Overrides the served document when set: params -> what xml_fetch returns.
RESPONDER: Callable[[Any], Any] | None = None


def reset() -> None:
    global RESPONDER
    CALLS.clear()
    USERS.clear()
    RESPONDER = None


def calls(user: str | None = None) -> list[dict[str, Any]]:
    return [c for c in CALLS if user is None or c["headers"].get("user") == user]


def attr(value: str) -> str:
    """An XML attribute value, quoted and escaped (& < > " ')."""
    return '"' + escape(value, {'"': "&quot;", "'": "&apos;"}) + '"'


def user_xml(user_id: str, spec: dict[str, dict[str, str]]) -> str:
    attrs = "".join(f" {k}={attr(v)}" for k, v in spec.get("attributes", {}).items())
    params = "".join(f"<param name={attr(k)} value={attr(v)}/>"
                     for k, v in spec.get("params", {}).items())
    variables = "".join(f"<variable name={attr(k)} value={attr(v)}/>"
                        for k, v in spec.get("variables", {}).items())
    return (f"<user id={attr(user_id)}{attrs}><params>{params}</params>"
            f"<variables>{variables}</variables></user>")


def document(domain: str, users: dict[str, dict[str, dict[str, str]]]) -> str:
    body = "".join(user_xml(uid, spec) for uid, spec in users.items())
    return ('<document type="freeswitch/xml"><section name="directory">'
            f"<domain name={attr(domain)}><users>{body}</users></domain>"
            "</section></document>")


NOT_FOUND = ('<document type="freeswitch/xml"><section name="result">'
             '<result status="not found"/></section></document>')


def serve(params: Any) -> Any:
    if RESPONDER is not None:
        return RESPONDER(params)
    user = params.getHeader("user") or ""
    domain = params.getHeader("domain") or ""
    for uid, spec in USERS.items():
        if uid == user or spec.get("attributes", {}).get("number-alias") == user:
            return document(domain, {uid: spec})
    return NOT_FOUND
