"""The XML dialplan as mod_dialplan_xml hunts it: contexts of extensions of conditions.

Hunting walks the context's extensions in order. Each condition tests ``field`` (a caller
profile field such as ``destination_number`` or a ``${variable}``) against ``expression``;
matching conditions add their actions (``$1``.. replaced by the regex captures), failing ones
their anti-actions; ``break`` (on-false by default, on-true, always, never) ends an extension's
conditions early; an extension whose last tested condition matched stops the hunt unless it
says ``continue="true"``. ``inline="true"`` actions run during the hunt, so later conditions
see what they set.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

from fakefs.dialstring import split_top


class DialplanError(ValueError):
    pass


@dataclass
class Action:
    application: str
    data: str
    inline: bool = False


@dataclass
class Condition:
    field: str | None
    expression: str | None
    break_: str = "on-false"
    actions: list[Action] = dc_field(default_factory=list)
    anti_actions: list[Action] = dc_field(default_factory=list)
    regexes: list[tuple[str, str]] = dc_field(default_factory=list)
    regex_mode: str = ""


@dataclass
class Extension:
    name: str
    continue_: bool
    conditions: list[Condition]


_TIME_ATTRS = {"year", "yday", "mon", "mday", "week", "mweek", "wday", "hour", "minute",
               "minute-of-day", "time-of-day", "date-time", "tod", "dow"}
_CAPTURE = re.compile(r"\$(\d)(?!\{)")


def _action(el: ET.Element) -> Action:
    app = el.get("application")
    if not app:
        raise DialplanError(f"<{el.tag}> without application attribute")
    return Action(app, el.get("data", ""), el.get("inline", "").lower() == "true")


def _condition(el: ET.Element) -> Condition:
    time_attrs = _TIME_ATTRS & set(el.attrib)
    if time_attrs:
        raise DialplanError(f"fakefs does not evaluate time conditions {sorted(time_attrs)}")
    cond = Condition(el.get("field"), el.get("expression"), el.get("break", "on-false"))
    if cond.break_ not in ("on-false", "on-true", "always", "never"):
        raise DialplanError(f"bad break={cond.break_!r}")
    cond.regex_mode = el.get("regex", "")
    for child in el:
        if child.tag == "action":
            cond.actions.append(_action(child))
        elif child.tag == "anti-action":
            cond.anti_actions.append(_action(child))
        elif child.tag == "regex":
            cond.regexes.append((child.get("field", ""), child.get("expression", "")))
    return cond


def _extension(el: ET.Element) -> Extension:
    return Extension(el.get("name", ""), el.get("continue", "").lower() == "true",
                     [_condition(c) for c in el.findall("condition")])


def parse_inline(text: str) -> list[Action]:
    """The ``inline`` dialplan: ``app:data,app:data``."""
    actions = []
    for item in split_top(text, ","):
        app, _, data = item.partition(":")
        actions.append(Action(app.strip(), data))
    return actions


class Dialplan:
    """Contexts loaded from XML files: ``<include>`` of ``<context>`` elements, or of bare
    ``<extension>`` elements (as dropped into FreeSWITCH's ``dialplan/<context>/``)."""

    def __init__(self) -> None:
        self.contexts: dict[str, list[Extension]] = {}

    def load_text(self, text: str, default_context: str = "default") -> None:
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise DialplanError(f"dialplan XML does not parse: {exc}") from exc
        contexts = list(root.iter("context"))
        for ctx in contexts:
            self.contexts.setdefault(ctx.get("name", default_context), []).extend(
                _extension(e) for e in ctx.findall("extension"))
        if not contexts:
            self.contexts.setdefault(default_context, []).extend(
                _extension(e) for e in root.iter("extension"))

    def load_dir(self, path: str | Path, default_context: str = "default") -> None:
        for file in sorted(Path(path).glob("*.xml")):
            self.load_text(file.read_text(encoding="utf-8"), default_context)

    def hunt(self, context: str, field_value: Callable[[str], str | None],
             run_inline: Callable[[str, str], None]) -> list[Action] | None:
        """The actions to execute for a call in ``context``; None when no extension matched
        (FreeSWITCH then hangs up with NO_ROUTE_DESTINATION)."""
        if context not in self.contexts:
            return None
        found: list[Action] = []
        matched_any = False
        for ext in self.contexts[context]:
            proceed = False
            for cond in ext.conditions:
                proceed, captures = _evaluate(cond, field_value)
                chosen = cond.actions if proceed else cond.anti_actions
                for action in chosen:
                    data = _substitute(action.data, captures)
                    if action.inline:
                        run_inline(action.application, data)
                    else:
                        found.append(Action(action.application, data))
                if cond.break_ == "on-true" and proceed:
                    break
                if cond.break_ == "always":
                    break
                if cond.break_ == "on-false" and not proceed:
                    break
            if proceed:
                matched_any = True
                if not ext.continue_:
                    break
        return found if (matched_any or found) else None


def _substitute(data: str, captures: tuple[str, ...]) -> str:
    def repl(m: re.Match[str]) -> str:
        index = int(m.group(1))
        return captures[index] if index < len(captures) and captures[index] is not None else ""
    return _CAPTURE.sub(repl, data)


def _evaluate(cond: Condition, field_value: Callable[[str], str | None]) \
        -> tuple[bool, tuple[str, ...]]:
    if cond.regexes:
        results = []
        captures: tuple[str, ...] = ()
        for fld, expr in cond.regexes:
            m = re.search(expr, field_value(fld) or "")
            results.append(bool(m))
            if m and not captures:
                captures = (m.group(0),) + tuple(g or "" for g in m.groups())
        mode = cond.regex_mode or "all"
        ok = {"all": all(results), "any": any(results), "xor": sum(results) == 1}.get(mode)
        if ok is None:
            raise DialplanError(f"bad regex mode {mode!r}")
        return ok, captures
    if cond.field is None:
        return True, ()
    value = field_value(cond.field) or ""
    if cond.expression is None:
        return True, ()
    m = re.search(cond.expression, value)
    if not m:
        return False, ()
    return True, (m.group(0),) + tuple(g or "" for g in m.groups())
