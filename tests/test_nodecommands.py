"""fsapps.switch.nodecommands without a switch: the typed commands as they cross Redis, and
the replies (the engine running them is covered by test_api_commands, test_cti_api,
test_csta_protocol and test_hold against fake switches)."""

from __future__ import annotations

import pytest

from fsapps.switch.nodecommands import (
    COMMANDS,
    Csta,
    Eavesdrop,
    Hold,
    Kill,
    NodeReply,
    Transfer,
    from_wire,
)


def test_a_command_crosses_redis_as_before() -> None:
    """The message is ``{"cmd": op, field: text, ...}``; fields at their default are not sent
    and come back as the default."""
    command = Transfer(uuid="u1", extension="1000", leg="bleg")
    assert command.wire() == {"uuid": "u1", "extension": "1000", "leg": "bleg"}
    assert from_wire({"cmd": "transfer", **command.wire(), "reply": "r1"}) == command
    assert from_wire({"cmd": "hold", "uuid": "u2"}) == Hold(uuid="u2")
    assert command.channel == "u1"


def test_defaults_are_those_the_node_applied_to_a_missing_argument() -> None:
    assert from_wire({"cmd": "eavesdrop", "uuid": "u"}) == Eavesdrop(
        uuid="u", mode="listen", dtmf="true", ring_seconds="30")
    assert from_wire({"cmd": "csta", "action": "invite"}) == Csta(action="invite", mode="barge")
    assert Eavesdrop(uuid="u", ring_seconds="30").wire() == {"uuid": "u"}


def test_every_field_arrives_as_text() -> None:
    assert from_wire({"cmd": "kill", "uuid": "u", "both": 1}) == Kill(uuid="u", both="1")
    assert set(COMMANDS) == {"transfer", "hold", "unhold", "threeway", "eavesdrop", "kill",
                             "phone_event", "cli", "csta"}
    with pytest.raises(KeyError):
        from_wire({"cmd": "format_disk"})


def test_replies() -> None:
    done = NodeReply.parse("+OK u1 on hold (node n1)\n")
    assert done.ok and done.detail == "u1 on hold (node n1)"
    refused = NodeReply.parse("-ERR hold u1: No such channel! (node n1)\n")
    assert not refused.ok and refused.detail == "hold u1: No such channel! (node n1)"
    assert NodeReply.done("x") == NodeReply(True, "+OK x\n")
    assert NodeReply.refused("why") == NodeReply(False, "-ERR why\n")
    assert Csta(action="drop").channel == ""
