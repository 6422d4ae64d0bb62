"""Dial strings as FreeSWITCH's originate reads them — pure parsing, no I/O.

``{a=1,b=2}[x=1]user/1000,[x=2]user/1001|sofia/gateway/gw1/5551234``: ``{...}`` variables
apply to every leg, ``[...]`` to one leg, ``,`` separates legs rung at the same time, ``|``
separates groups tried one after another.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class DialStringError(ValueError):
    pass


@dataclass
class Leg:
    endpoint: str
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class DialString:
    variables: dict[str, str]
    groups: list[list[Leg]]


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is outside ``{}``, ``[]``, ``<>`` and single quotes."""
    parts, depth, quoted, current = [], 0, False, []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "{[<":
            depth += 1
        elif not quoted and ch in "}]>":
            depth -= 1
            if depth < 0:
                raise DialStringError(f"unbalanced {ch!r} in {text!r}")
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if depth != 0 or quoted:
        raise DialStringError(f"unbalanced brackets or quotes in {text!r}")
    parts.append("".join(current))
    return parts


def parse_vars(body: str) -> dict[str, str]:
    """``a=1,b='x,y'`` → {"a": "1", "b": "x,y"}."""
    result: dict[str, str] = {}
    if not body.strip():
        return result
    for item in split_top(body, ","):
        if "=" not in item:
            raise DialStringError(f"variable without '=' in {body!r}: {item!r}")
        name, value = item.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        result[name.strip()] = value.replace("\\,", ",")
    return result


def _take_block(text: str, open_ch: str, close_ch: str) -> tuple[dict[str, str], str]:
    text = text.lstrip()
    if not text.startswith(open_ch):
        return {}, text
    depth = 0
    for i, ch in enumerate(text):
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return parse_vars(text[1:i]), text[i + 1:]
    raise DialStringError(f"unclosed {open_ch!r} in {text!r}")


def parse(dialstring: str) -> DialString:
    """Parse a bridge/originate dial string; raises DialStringError on a malformed one."""
    text = dialstring.strip()
    if not text:
        raise DialStringError("empty dial string")
    global_vars, text = _take_block(text, "{", "}")
    groups: list[list[Leg]] = []
    for group_text in split_top(text, "|"):
        group_vars, group_text = _take_block(group_text, "{", "}")
        legs: list[Leg] = []
        for leg_text in split_top(group_text, ","):
            leg_vars, endpoint = _take_block(leg_text, "[", "]")
            endpoint = endpoint.strip()
            if not endpoint or "/" not in endpoint:
                raise DialStringError(f"bad endpoint {endpoint!r} in {dialstring!r}")
            legs.append(Leg(endpoint, {**group_vars, **leg_vars}))
        groups.append(legs)
    return DialString(global_vars, groups)
