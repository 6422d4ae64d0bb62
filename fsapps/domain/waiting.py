"""What a waiting caller hears and where it may go (issue 18 items 3 and 4), as pure decisions:
the group's announcement (its steps, filled in with the caller's place and estimated wait),
the estimated wait itself, and the destinations a caller leaves the queue to (the group's
``overflow_to`` past its max wait, ``exit_to`` when it presses the exit key).

An announcement is a list of sentences separated by ``;;``, each a list of steps separated by
``;``, each step one switch application: ``playback <file>``, ``say <module> <type> <method>
<number>`` (mod_say: ``say en number pronounced {position}``) or ``speak <engine>|<voice>|<text>``
(mod_flite). ``{position}`` (1 = next), ``{minutes}`` (the estimated wait in whole minutes,
rounded up) and ``{seconds}`` are filled in with numbers, nothing else; a sentence naming the
wait is left out whole when there is no estimate (its recorded words around the number too).
Only these three applications run: an announcement cannot start anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fsapps.domain.numbers import valid_extension

ANNOUNCE_APPS = ("playback", "say", "speak")
# The English default (mod_flite, kal): what a group with announce_seconds and no announce
# steps says.
DEFAULT_ANNOUNCE = ("speak flite|kal|You are number {position} in the queue.;;"
                    "speak flite|kal|Your estimated wait is about {minutes} minutes.")
PLACEHOLDERS = ("position", "minutes", "seconds")
_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")
_DESTINATION_KINDS = ("hangup", "group", "extension", "dialplan")
_DIALPLAN_WORD = re.compile(r"^[A-Za-z0-9_.+*#@\-]{1,64}$")
EXIT_KEYS = "0123456789*#"
# A group overflowing into a group that overflows ...: at most this many groups per call.
MAX_GROUP_HOPS = 5


@dataclass(frozen=True)
class Step:
    app: str
    data: str  # with placeholders
    sentence: int = 0  # steps of one sentence are said, or left out, together


@dataclass(frozen=True)
class Destination:
    """Where a caller leaving the queue goes: ``hangup``; ``group`` (``target``: the group it
    queues in next); ``extension`` (a phone rung as nway_bridge does); ``dialplan`` (the
    switch's ``transfer <target>``: destination, optionally dialplan and context, separated
    by spaces); ``callback`` (the caller keeps its place and hangs up; it is called back when
    its turn comes, :mod:`fsapps.domain.callbacks`)."""

    kind: str
    target: str = ""

    def __str__(self) -> str:
        """As it is configured (:func:`parse_destination` reads it back)."""
        if self.kind in ("hangup", "callback"):
            return self.kind
        return f"{self.kind}:{self.target.replace(' ', ',')}"


HANGUP = Destination("hangup")
CALLBACK = Destination("callback")


def parse_destination(text: str) -> Destination:
    """``hangup`` (or empty), ``callback``, ``group:<g>``, ``extension:<ext>``,
    ``dialplan:<destination>[,<dialplan>[,<context>]]`` (one word: a command argument);
    anything else raises ValueError naming it. Every part is a plain name
    (``[A-Za-z0-9_.+*#@-]``): nothing can reach a dial string or the dialplan but a name.
    The target is kept as the switch's ``transfer`` takes it (parts separated by spaces)."""
    text = (text or "").strip()
    if text in ("", "hangup"):
        return HANGUP
    if text == "callback":
        return CALLBACK
    kind, sep, target = text.partition(":")
    target = target.strip()
    if not sep or kind not in _DESTINATION_KINDS or kind == "hangup":
        raise ValueError(f"not a destination: {text!r} (hangup, callback, group:<g>, "
                         "extension:<ext>, dialplan:<destination>[,<dialplan>[,<context>]])")
    words = target.replace(",", " ").split() if kind == "dialplan" else target.split()
    if kind in ("group", "extension"):
        if len(words) != 1 or not valid_extension(words[0]):
            raise ValueError(f"not a {kind}: {target!r}")
    elif not 1 <= len(words) <= 3 or not all(_DIALPLAN_WORD.match(w) for w in words):
        raise ValueError(f"not a dialplan target: {target!r} (<destination>[,<dialplan>"
                         "[,<context>]])")
    return Destination(kind, " ".join(words))


def parse_announce(text: str) -> list[Step]:
    """The announcement's steps (empty text: :data:`DEFAULT_ANNOUNCE`); ValueError naming a
    step whose application is not one of :data:`ANNOUNCE_APPS`, has no data, or names an
    unknown placeholder."""
    steps = []
    for sentence, raw_step in ((n, r) for n, part in enumerate((text or DEFAULT_ANNOUNCE)
                                                              .split(";;"))
                               for r in part.split(";")):
        raw = raw_step.strip()
        if not raw:
            continue
        app, _, data = raw.partition(" ")
        data = data.strip()
        if app not in ANNOUNCE_APPS or not data:
            raise ValueError(f"not an announcement step: {raw!r} (playback <file>, "
                             "say <args>, speak <engine>|<voice>|<text>)")
        unknown = [p for p in _PLACEHOLDER.findall(data) if p not in PLACEHOLDERS]
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} in {raw!r} "
                             f"({', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
        steps.append(Step(app, data, sentence))
    return steps


def estimated_wait_seconds(position: int, average_handle_ms: int | None,
                           staffed: int) -> int | None:
    """The estimated wait of the caller at ``position`` (1 = next): position x the group's
    average handling time / the agents logged into it, in whole seconds rounded up. None
    without an average (no call handled lately) or nobody logged in."""
    if average_handle_ms is None or average_handle_ms <= 0 or staffed <= 0 or position <= 0:
        return None
    return -(-position * average_handle_ms // (staffed * 1000))


def announcement(steps: list[Step], position: int, wait_seconds: int | None) \
        -> list[tuple[str, str]]:
    """The (application, data) pairs to run: placeholders filled in; the sentences naming the
    wait left out when there is no estimate."""
    values = {"position": str(position)}
    if wait_seconds is not None:
        values["minutes"] = str(max(1, -(-wait_seconds // 60)))
        values["seconds"] = str(wait_seconds)
    unsaid = {step.sentence for step in steps
              if any(p not in values for p in _PLACEHOLDER.findall(step.data))}
    return [(step.app, _PLACEHOLDER.sub(lambda m: values[m.group(1)], step.data))
            for step in steps if step.sentence not in unsaid]
