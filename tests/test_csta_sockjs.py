"""SockJS server side (fsapps.server.csta.sockjs): info, WebSocket framing, xhr_streaming, xhr
polling with xhr_send, raw WebSocket, broken framing — against an echo receiver in a real aiohttp
server (asyncio.run; no STOMP involved)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fsapps.server.csta import sockjs


class Echo:
    def __init__(self, session: sockjs.Session) -> None:
        self.session = session
        self.closed = False

    async def on_message(self, text: str) -> None:
        if text == "bye":
            self.session.close(3000, "Go away!")
        else:
            self.session.send("echo:" + text)

    async def on_close(self) -> None:
        self.closed = True


REGISTRY: web.AppKey[sockjs.SessionRegistry] = web.AppKey("registry", sockjs.SessionRegistry)


def run(test: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = web.Application()
        registry = sockjs.SessionRegistry(Echo)
        app[REGISTRY] = registry
        sockjs.install(app, "/mvc/stomp", registry)
        async with TestClient(TestServer(app)) as client:
            return await test(client)
    return asyncio.run(main())


def test_framing_helpers() -> None:
    assert sockjs.message_frame(["a", 'b"']) == 'a["a","b\\""]'
    assert sockjs.close_frame(3000, "Go away!") == 'c[3000,"Go away!"]'
    assert sockjs.decode_client('["x","y"]') == ["x", "y"]
    assert sockjs.decode_client('"x"') == ["x"]
    for bad in ("[1]", "{}", "nope"):
        try:
            sockjs.decode_client(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_info_and_greeting() -> None:
    async def test(client: TestClient) -> None:
        info = await (await client.get("/mvc/stomp/info")).json()
        assert info["websocket"] is True and info["cookie_needed"] is False
        assert (await (await client.get("/mvc/stomp")).text()) == "Welcome to SockJS!\n"
    run(test)


def test_websocket_transport() -> None:
    async def test(client: TestClient) -> list[str]:
        ws = await client.ws_connect("/mvc/stomp/123/abcdefgh/websocket")
        frames = [(await ws.receive()).data]
        await ws.send_str(json.dumps(["hello", "world"]))
        while len(frames) < 2:
            frames.append((await ws.receive()).data)
        await ws.send_str(json.dumps(["bye"]))
        frames.append((await ws.receive()).data)
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING)
        return frames
    frames = run(test)
    assert frames[0] == "o"
    assert frames[1] in ('a["echo:hello","echo:world"]', 'a["echo:hello"]')
    assert frames[-1] == 'c[3000,"Go away!"]'


def test_xhr_polling_and_send() -> None:
    async def test(client: TestClient) -> None:
        base = "/mvc/stomp/000/sess0001"
        assert await (await client.post(base + "/xhr")).text() == "o\n"
        sent = await client.post(base + "/xhr_send", data='["ping"]')
        assert sent.status == 204
        assert await (await client.post(base + "/xhr")).text() == 'a["echo:ping"]\n'
        broken = await client.post(base + "/xhr_send", data="[1,")
        assert broken.status == 500
        assert (await client.post("/mvc/stomp/000/nosuch/xhr_send", data='["x"]')).status == 404
    run(test)


def test_xhr_streaming() -> None:
    async def test(client: TestClient) -> list[bytes]:
        base = "/mvc/stomp/000/stream01"
        response = await client.post(base + "/xhr_streaming")
        lines = [await response.content.readline() for _ in range(2)]
        assert (await client.post(base + "/xhr_send", data='["x"]')).status == 204
        lines.append(await response.content.readline())
        response.close()
        return lines
    lines = run(test)
    assert lines[0] == b"h" * 2048 + b"\n"
    assert lines[1] == b"o\n"
    assert lines[2] == b'a["echo:x"]\n'


def test_raw_websocket_has_no_framing() -> None:
    async def test(client: TestClient) -> str:
        ws = await client.ws_connect("/mvc/stomp/websocket")
        await ws.send_str("plain")
        return str((await ws.receive()).data)
    assert run(test) == "echo:plain"


def test_a_polling_session_belongs_to_its_address() -> None:
    async def test(client: TestClient) -> None:
        base = "/mvc/stomp/000/owned001"
        assert await (await client.post(base + "/xhr")).text() == "o\n"
        registry_session = next(iter(
            client.app[REGISTRY].sessions.values()))  # type: ignore[index]
        registry_session.remote = "192.0.2.7"  # as if another address had opened it
        assert (await client.post(base + "/xhr")).status == 404
        assert (await client.post(base + "/xhr_send", data='["x"]')).status == 404
    run(test)
