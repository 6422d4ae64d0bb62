"""Fuzzing of the wellClient calls (``POST /login``, ``/api/csta/...``; tests/test_cti_fuzz.py
leaves them out): hypothesis sends plausible and hostile values — wrong types, bodies that
are not JSON objects, odd devices, connections and callIds, ``%7C`` and ``|``, other users'
devices, no or bogus tokens — over real HTTP to a server wired to a fake switch, Redis and
PostgreSQL. Whatever it sends, the answer is never a 5xx and every refusal is a JSON
``{"error": ...}``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from cti_support import CtiStack, cti_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakefs.channel import Behaviour
from fakefs.scenario import wait_until
from fsapps.server.csta.rest import OPENAPI_TAG, documented_routes

D = "cc.test"
LIVE = str(uuid.UUID(int=7))
TEXT = ["", " ", "1001", "1002", "1900", "9999", f"1001@{D}", f"1002@{D}", f"1900@{D}",
        "1001@evil.test", "1001@", "@cc.test", f"1001|{LIVE}", f"1001@{D}|{LIVE}",
        f"1001@{D}%7C{LIVE}", f"1001@{D}%7c{LIVE}", LIVE, "not-a-uuid", "${x}", "a|b", "%00",
        "1001,user/x", "1001 XML default", "../../etc", "é", "x" * 300, "\n", "<img>",
        "agent@cc.test", "agent2@cc.test", "supervisor@cc.test", "Ready", "NotReady", "Login",
        "Logout", "SetState", "Active", "Silent", "listen", "whisper", "barge"]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)
VALUE = st.one_of(st.sampled_from(TEXT), st.sampled_from(TEXT), st.text(max_size=30), ANY_JSON)
ACTIONS = ["answer", "hold", "retrieve", "singleStepTransfer", "singleStepConference",
           "consult", "conference", "cancelConsult", "transfer", "clear", "fly", ""]
FIELDS = ["func", "loginId", "device", "agentMode", "reason", "force", "from", "to",
          "transferTo", "conferenceParticipant", "participationType",
          "consultationParticipant", "consultCallId", "activeCallId", "entries", "callId",
          "domain"]
ENTRIES = st.lists(st.one_of(
    st.fixed_dictionaries({"key": VALUE, "value": VALUE}),
    st.fixed_dictionaries({"key": st.sampled_from(["customerId", "a.b-c_1", "号码"]),
                           "value": st.text(max_size=20)}),
    ANY_JSON), max_size=4)
BODY = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=6).flatmap(
        lambda d: (ENTRIES.map(lambda e: {**d, "entries": e}) if "entries" in d else st.just(d))),
    ANY_JSON).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=40)
PATHS = [
    ("POST", "/api/csta/agent/state", ()),
    ("POST", "/api/csta/agent/heartbeat/{login_id}", ("login_id",)),
    ("POST", "/api/csta/agent/heartbeat", ()),
    ("POST", "/api/csta/callControl/calls", ()),
    ("POST", "/api/csta/callControl/calls/{call_id}/connections/{connection}/{action}",
     ("call_id", "connection", "action")),
    ("DELETE", "/api/csta/callControl/calls/{call_id}/connections/{connection}",
     ("call_id", "connection")),
    ("POST", "/api/csta/callControl/calls/{call_id}/user-data", ("call_id",)),
    ("POST", "/api/csta/callControl/calls/{call_id}/spy", ("call_id",)),
    ("GET", "/api/csta/wallboard", ()),
    ("POST", "/api/csta/supervise/drop", ()),
]
STATUSES: list[int] = []


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any) -> Iterator[CtiStack]:
    with cti_stack(redis_server.url, database.dsn, login_max_failures=10_000,
                   login_max_failures_per_address=10_000) as s:
        for ext in ("1001", "1002", "1900"):
            s.center.agent(ext, ["110"], ready=False,
                           behaviour=Behaviour(answer_after_ms=None))
        yield s
        for channel in list(s.switch.channels.values()):
            s.switch.hangup(channel)
        wait_until(lambda: not s.switch.channels, 10, "calls over")


@pytest.fixture(scope="module")
def tokens(stack: CtiStack) -> dict[str, str | None]:
    out: dict[str, str | None] = {"none": None, "bogus": "not-a-token"}
    for user in ("agent", "supervisor", "admin"):
        reply = stack.server.anonymous().post("/login", data={"username": user,
                                                              "password": user,
                                                              "namespace": D})
        out[user] = reply.json()["sessionId"]
    return out


def test_every_wellclient_route_is_fuzzed() -> None:
    documented = {(r.method, r.path) for r in documented_routes() if r.tag == OPENAPI_TAG}
    assert documented == {(m, p) for m, p, _ in PATHS} | {("POST", "/login")}


def path_value(name: str) -> st.SearchStrategy[str]:
    plausible = {"action": st.sampled_from(ACTIONS),
                 "call_id": st.sampled_from([LIVE, str(uuid.uuid4()), "not-a-uuid"])}
    return st.one_of(plausible.get(name, st.sampled_from(TEXT)), st.sampled_from(TEXT),
                     st.text(min_size=1, max_size=20))


@pytest.mark.parametrize(("method", "path", "names"), PATHS, ids=[f"{m} {p}" for m, p, _ in PATHS])
def test_fuzz_wellclient_route_never_answers_5xx(stack: CtiStack, tokens: dict[str, str | None],
                                                 method: str, path: str,
                                                 names: tuple[str, ...]) -> None:
    request = st.fixed_dictionaries({
        "path": st.fixed_dictionaries({n: path_value(n) for n in names}),
        "query": st.dictionaries(st.sampled_from(["deviceId", "mode", "target", "domain"]),
                                 st.sampled_from(TEXT) | st.text(max_size=10), max_size=3),
        "body": BODY,
        "user": st.sampled_from(["agent", "agent", "supervisor", "admin", "none", "bogus"]),
        "header": st.sampled_from(["sessionId", "Authorization"]),
    })

    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(req=request)
    def run(req: dict[str, Any]) -> None:
        url = path
        for name, value in req["path"].items():
            url = url.replace("{" + name + "}", quote(value, safe="|@"))
        token = tokens[req["user"]]
        headers = {"Content-Type": "application/json"}
        if token:
            headers[req["header"]] = token if req["header"] == "sessionId" else f"Nway {token}"
        reply = stack.server.anonymous().request(method, url, params=req["query"],
                                                 data=req["body"], headers=headers)
        assert reply.status_code < 500, (method, url, req, reply.status_code, reply.text)
        STATUSES.append(reply.status_code)
        if reply.status_code >= 400:
            data = reply.json()
            assert isinstance(data, dict) and isinstance(data.get("error"), str), data

    run()


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(form=st.dictionaries(st.sampled_from(["username", "password", "namespace", "x"]),
                            st.sampled_from(TEXT) | st.text(max_size=20), max_size=4),
       raw=st.none() | st.binary(max_size=40),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json",
                                     "multipart/form-data", "text/plain"]))
def test_fuzz_login_never_answers_5xx(stack: CtiStack, form: dict[str, str], raw: bytes | None,
                                      content_type: str) -> None:
    http = stack.server.anonymous()
    if raw is None:
        reply = http.post("/login", data=form)
    else:
        reply = http.post("/login", data=raw, headers={"Content-Type": content_type})
    assert reply.status_code in (200, 400, 401, 429), (form, raw, reply.status_code, reply.text)
    data = reply.json()
    assert isinstance(data.get("sessionId" if reply.status_code == 200 else "error"), str)


def test_the_fuzzing_reached_the_handlers() -> None:
    # runs after the fuzz tests (file order): not everything was refused at the door
    assert {400, 401, 403, 404} <= set(STATUSES), sorted(set(STATUSES))
    assert {200, 204} & set(STATUSES), sorted(set(STATUSES))
