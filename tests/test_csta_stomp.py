"""The STOMP 1.1 codec (fsapps.server.csta.stomp): frames, escaping, incremental parsing,
heart-beats."""

from __future__ import annotations

import pytest

from fsapps.server.csta.stomp import Frame, Parser, StompError, negotiate_heartbeat, parse_frame


def test_encode_escapes_headers_except_in_connected() -> None:
    text = Frame("MESSAGE", {"destination": "/topic/a:b", "x": "line\nbreak\\"}, "{}").encode()
    assert text == "MESSAGE\ndestination:/topic/a\\cb\nx:line\\nbreak\\\\\n\n{}\0"
    assert Frame("CONNECTED", {"version": "1.1", "heart-beat": "10000,0"}).encode() == \
        "CONNECTED\nversion:1.1\nheart-beat:10000,0\n\n\0"


def test_round_trip_and_first_repeated_header_wins() -> None:
    frame = Frame("SEND", {"destination": "/q/x:y", "k": "a\nb"}, "body")
    assert parse_frame(frame.encode().rstrip("\0")) == frame
    assert parse_frame("SEND\nk:1\nk:2\n\nx").headers == {"k": "1"}


def test_parser_handles_pieces_heartbeats_and_several_frames() -> None:
    parser = Parser()
    wire = "\n\nCONNECT\naccept-version:1.1\n\n\0\nSUBSCRIBE\nid:0\ndestination:/t\n\n\0"
    frames = []
    for ch in wire:
        frames += list(parser.feed(ch))
    assert [f.command for f in frames] == ["CONNECT", "SUBSCRIBE"]
    assert frames[1].headers == {"id": "0", "destination": "/t"}
    assert parser.heartbeats == 3


def test_content_length_cuts_the_body() -> None:
    assert parse_frame("SEND\ncontent-length:2\n\nabcdef").body == "ab"


@pytest.mark.parametrize("bad", ["FLY\n\n", "SEND\nno-colon\n\n", "SEND\nk:\\x\n\n",
                                 "SEND\ncontent-length:z\n\n", "SEND"])
def test_bad_frames_name_the_problem(bad: str) -> None:
    with pytest.raises(StompError):
        parse_frame(bad)


def test_oversized_frame_is_refused() -> None:
    parser = Parser(max_frame=100)
    with pytest.raises(StompError, match="larger"):
        list(parser.feed("SEND\n\n" + "x" * 200))


def test_heartbeat_negotiation() -> None:
    assert negotiate_heartbeat("10000,10000", 10000, 0) == (10000, 0)
    assert negotiate_heartbeat("0,0", 10000, 10000) == (0, 0)
    assert negotiate_heartbeat("5000,20000", 10000, 10000) == (20000, 10000)
    with pytest.raises(StompError):
        negotiate_heartbeat("x", 1, 1)
