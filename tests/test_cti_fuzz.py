"""Schema-driven fuzzing of the CTI server: for every operation of the served OpenAPI document,
hypothesis sends requests built from the document (valid values, wrong types, missing and
extra fields, odd path parameters, bodies that are not JSON objects, no or other users'
tokens) over real HTTP to a server wired to a fake switch, Redis and PostgreSQL. Whatever it
sends, the answer is never a 5xx, always JSON (or the switch's text for /cli), and a 200
carries the fields the document promises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from cti_support import GROUP, CtiStack, cti_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakefs.scenario import wait_until
from fsapps.config import WebrtcSettings
from fsapps.server import cti_api as api
from fsapps.server import stats, supervision, webrtc
from fsapps.server.csta.rest import OPENAPI_TAG
from fsapps.server.registry import ROUTES, openapi

SAMPLES = ["1001", "1002", "1900", "110", "120", "9999", "", " ", "admin", "agent", "ready",
           "busy", "talking", "+8613800000000", "gw1", "a,b", "{x}", "../1001", "%00", "é",
           "1001\n", "x" * 300, "00000000-0000-0000-0000-000000000000", "status", "bgapi",
           "uuid_kill", "show channels", "customer"]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)


@pytest.fixture(scope="module")
def stack(redis_server: Any, database: Any, no_leaked_switch_threads: None) -> Iterator[CtiStack]:
    # the browser phone on, so its routes are fuzzed past "not configured"
    webrtc_on = WebrtcSettings(ws_urls=("ws://127.0.0.1:5066",))
    with cti_stack(redis_server.url, database.dsn, login_max_failures=1000,
                   login_max_failures_per_address=1000, sections={"webrtc": webrtc_on}) as s:
        s.center.group("120")
        for ext in ("1001", "1002"):
            s.center.agent(ext, [GROUP])
        yield s


@pytest.fixture
def live_call(stack: CtiStack) -> Iterator[None]:
    """A queue call answered by an agent before each operation's run, so the fuzzing also
    reaches the node commands (hold, transfer, eavesdrop, hangup ...) with a channel to act
    on; every call is hung up afterwards."""
    switch = stack.switch
    customer = stack.center.call(switch, "13700000000", f"7{GROUP}")
    try:
        leg = wait_until(lambda: customer.peer and switch.channels.get(customer.peer)
                         and switch.channels[customer.peer].answered
                         and switch.channels[customer.peer], 5, "an agent answered")
        wait_until(lambda: stack.ctx.redis.hget(f"cti_userinfo@{stack.center.domain}",
                                                leg.get("dialed_user")), 5, "call recorded")
    except TimeoutError:
        pass  # the agents were left busy or logged out by an earlier run: fuzz anyway
    yield
    for channel in list(switch.channels.values()):
        switch.hangup(channel, "NORMAL_CLEARING")
    wait_until(lambda: not switch.channels, 5, "calls over")
    for ext in ("1001", "1002"):
        stack.center.agent(ext, [GROUP])


@pytest.fixture(scope="module")
def tokens(stack: CtiStack) -> dict[str, str | None]:
    return {"admin": stack.server.login("admin"), "agent": stack.server.login("agent"),
            "supervisor": stack.server.login("supervisor"), "none": None,
            "bogus": "not-a-token"}


def operations(stack: CtiStack) -> list[tuple[str, str, dict[str, Any]]]:
    doc = stack.server.anonymous().get("/api/openapi.json").json()
    return [(method.upper(), path, op) for path, ops in doc["paths"].items()
            for method, op in ops.items()]


# Plausible values per field name, so that a good share of requests get past validation and
# reach the operations (and the switch) instead of all being refused at the door.
GOOD = {"Extension": ["1001", "1002"], "ext": ["1001", "1002"], "EvdedPhone": ["1001", "1002"],
        "EvdPhone": ["1001", "1002", "1900"], "Groups": ["110", "110,120"],
        "Phone": ["1900", "1002"], "Gateway": [""], "EvdGateway": [""],
        "username": ["admin", "agent"], "password": ["admin", "agent"], "cmd": ["status"],
        "arg": [""], "node": ["node1"]}


def value_for(name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    good = GOOD.get(name, []) + list(schema.get("enum", []))
    plausible = st.sampled_from(good) if good else st.sampled_from(SAMPLES)
    return st.one_of(plausible, plausible, plausible, st.sampled_from(SAMPLES),
                     st.text(max_size=40), ANY_JSON)


def body_for(op: dict[str, Any]) -> st.SearchStrategy[bytes]:
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get(
        "schema", {"properties": {}})
    props = schema.get("properties", {})
    complete = st.fixed_dictionaries({name: value_for(name, p) for name, p in props.items()})
    partial = st.fixed_dictionaries(
        {}, optional={name: value_for(name, p) for name, p in props.items()}).flatmap(
        lambda d: st.dictionaries(st.text(max_size=10), ANY_JSON, max_size=2).map(
            lambda extra: {**extra, **d}))
    encoded = st.one_of(complete, complete, complete, partial, ANY_JSON).map(
        lambda v: json.dumps(v).encode())
    return st.one_of(encoded, encoded, encoded, encoded, st.binary(max_size=40))


def request_for(stack: CtiStack, method: str, path: str,
                op: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    params = {p["name"]: p for p in op.get("parameters", [])}
    path_values = {name: st.sampled_from(["1001", "1001", "1002", "9999", "1900"])
                   | st.text(min_size=1, max_size=20)
                   for name, p in params.items() if p["in"] == "path"}
    query_values = {name: value_for(name, p["schema"]).map(str)
                    for name, p in params.items() if p["in"] == "query"}
    return st.fixed_dictionaries({
        "path": st.fixed_dictionaries(path_values),
        "query": st.fixed_dictionaries({}, optional=query_values),
        "body": body_for(op) if method == "POST" else st.just(b""),
        "user": st.sampled_from(["admin", "admin", "agent", "supervisor", "none", "bogus"]),
    })


def check(stack: CtiStack, tokens: dict[str, str | None], method: str, path: str,
          op: dict[str, Any], req: dict[str, Any]) -> None:
    url = path
    for name, value in req["path"].items():
        url = url.replace("{" + name + "}", quote(value, safe=""))
    token = tokens[req["user"]]
    if path == "/api/logout" and req["user"] in ("admin", "agent", "supervisor"):
        token = stack.server.login(req["user"])  # a token of its own to revoke
    headers = {"Authorization": f"Nway {token}"} if token else {}
    reply = stack.server.anonymous().request(method, url, params=req["query"],
                                             data=req["body"], headers=headers)
    assert reply.status_code < 500, (method, url, req, reply.status_code, reply.text)
    STATUSES.append(reply.status_code)
    if reply.headers.get("Content-Type", "").startswith("text/plain"):
        assert reply.status_code == 200 and path in ("/cli", "/metrics")
        return
    data = reply.json()
    if reply.status_code == 401 and path == "/api/login":
        assert data == "Not Authorized"  # seed 001's failed login, verbatim
        return
    if reply.status_code >= 400:
        assert isinstance(data, dict) and isinstance(data.get("error"), str), data
        return
    documented = op["responses"]["200"]["content"]["application/json"]["schema"]
    if documented.get("type") == "object":
        assert set(documented.get("required", [])) <= set(data), (url, data)
    elif documented.get("type") == "array":
        assert isinstance(data, list)
        for row in data:
            assert set(documented["items"]["required"]) == set(row), row


def test_every_operation_is_fuzzed(stack: CtiStack) -> None:
    # issue 9's wellClient calls are documented in the same registry; their own tests
    # (tests/test_csta_*.py) cover them
    served = {(r.method, r.path) for r in stack.server.runner.app[ROUTES]
              if r.tag != OPENAPI_TAG}
    assert {(m, p) for m, p, op in operations(stack)
            if OPENAPI_TAG not in op.get("tags", [])} == served
    assert {(m, p) for m, p, _ in OPERATIONS} == served


# The operations, from the document the routes produce (test_every_operation_is_fuzzed
# checks that the server serves exactly these).
DOCUMENT = openapi([*api.ROUTES, *supervision.ROUTES, *stats.ROUTES,
                    *webrtc.documented_routes()])
OPERATIONS = [(method.upper(), path, op) for path, ops in DOCUMENT["paths"].items()
              for method, op in ops.items()]
STATUSES: list[int] = []


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS,
                         ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_fuzz_operation_never_answers_5xx(stack: CtiStack, tokens: dict[str, str | None],
                                          live_call: None, method: str, path: str,
                                          op: dict[str, Any]) -> None:

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(req=request_for(stack, method, path, op))
    def run(req: dict[str, Any]) -> None:
        check(stack, tokens, method, path, op, req)

    run()


def test_the_fuzzing_reached_both_successes_and_refusals() -> None:
    # runs after the fuzz tests (file order): the inputs were not all refused at the door
    assert STATUSES.count(200) > 50, sorted(set(STATUSES))
    assert {401, 403, 404, 422} <= set(STATUSES)
