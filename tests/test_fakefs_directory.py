"""Fidelity of fakefs' directory and registration (FREESWITCH.md, seed 003): what xml_fetch is
called with, mod_sofia's REGISTER checks, the sofia::* events, binding fallbacks and the
``cacheable`` user cache."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakefs_bindings import state

from fakefs import Behaviour, Switch, SwitchCrashed
from fakefs.directory import a1_hash
from fakefs.events import Event
from fakefs.scenario import wait_until

DOMAIN = "192.168.31.57"
BINDING = "fakefs_bindings.served"

# Header names of seed 003's sofia::register example, minus the ones every event carries.
SEED_REGISTER_HEADERS = [
    "profile-name", "from-user", "from-host", "presence-hosts", "contact", "call-id", "rpid",
    "status", "expires", "to-user", "to-host", "network-ip", "network-port", "username",
    "realm", "user-agent", "sip_number_alias", "sip_auth_username", "sip_auth_realm",
    "number_alias", "user_name", "domain_name", "sip-force-contact",
    "effective_caller_id_name", "sip-allow-multiple-registrations", "sip-force-expires",
    "force_ping",
]


@pytest.fixture
def switch() -> Iterator[Switch]:
    state.reset()
    sw = Switch("dir1", domain=DOMAIN, time_scale=0.05, seed=1)
    sw.xml_bindings.append((BINDING, {"directory"}))
    sw.start()
    try:
        yield sw
    finally:
        sw.shutdown(grace=1.0)
        state.reset()


def serve(user: str, password: str = "1234", *, params: dict[str, str] | None = None,
          variables: dict[str, str] | None = None,
          attributes: dict[str, str] | None = None) -> None:
    state.USERS[user] = {"params": {"password": password, **(params or {})},
                         "variables": dict(variables or {}),
                         "attributes": dict(attributes or {})}


def customs(sw: Switch, subclass: str) -> list[Event]:
    return sw.bus.events("CUSTOM", subclass)


# ---------------------------------------------------------------- what xml_fetch sees ------
def test_register_calls_xml_fetch_with_two_args_and_the_sip_auth_headers(switch: Switch) -> None:
    serve("1001")
    result = switch.register("1001", DOMAIN, password="1234", user_agent="Yealink T46",
                             network_ip="10.1.2.3")
    assert result.ok, result
    [call] = state.calls("1001")
    assert call["nargs"] == 2 and call["args"] == ""
    h = call["headers"]
    expected = {"section": "directory", "tag_name": "domain", "key_name": "name",
                "key_value": DOMAIN, "user": "1001", "domain": DOMAIN, "action": "sip_auth",
                "sip_auth_method": "REGISTER", "sip_auth_username": "1001",
                "sip_auth_realm": DOMAIN, "ip": "10.1.2.3", "sip_user_agent": "Yealink T46"}
    assert {k: h.get(k) for k in expected} == expected
    [registered] = customs(switch, "sofia::register")
    assert h["sip_call_id"] == registered.headers["call-id"]
    assert h["Event-Name"] == "REQUEST_PARAMS"


def test_dialling_user_sends_action_user_call(switch: Switch) -> None:
    serve("1001")
    assert switch.register("1001", DOMAIN, password="1234").ok
    reply = switch.api(f"originate user/1001@{DOMAIN} &park()")
    assert reply.startswith("+OK "), reply
    actions = [c["headers"].get("action") for c in state.calls("1001")]
    assert actions == ["sip_auth", "user_call"]
    user_call = state.calls("1001")[1]["headers"]
    assert user_call["key_value"] == DOMAIN and user_call["domain"] == DOMAIN
    assert "sip_auth_method" not in user_call
    switch.api(f"uuid_kill {reply.split()[1]}")


# ---------------------------------------------------------------- mod_sofia's checks -------
def test_password_accepted_and_wrong_password_forbidden(switch: Switch) -> None:
    serve("1001", "s3cret")
    assert switch.register("1001", DOMAIN, password="s3cret").ok
    bad = switch.register("1001", DOMAIN, password="guess", network_ip="10.9.9.9",
                          user_agent="MicroSIP")
    assert bad.code == 403 and not bad.ok
    assert len(customs(switch, "sofia::register")) == 1
    [failure] = customs(switch, "sofia::register_failure")
    assert {k: failure.headers[k] for k in ("profile-name", "to-user", "to-host", "network-ip",
                                            "user-agent", "registration-type")} == {
        "profile-name": "internal", "to-user": "1001", "to-host": DOMAIN,
        "network-ip": "10.9.9.9", "user-agent": "MicroSIP", "registration-type": "REGISTER"}
    results = [e.headers["auth-result"] for e in customs(switch, "sofia::register_attempt")]
    assert results == ["SUCCESS", "FORBIDDEN"]
    assert len(customs(switch, "sofia::pre_register")) == 2


def test_unknown_user_is_forbidden(switch: Switch) -> None:
    result = switch.register("4040", DOMAIN, password="x")
    assert result.code == 403
    assert customs(switch, "sofia::register_failure")
    assert not customs(switch, "sofia::register")


def test_a1_hash(switch: Switch) -> None:
    serve("1002", "", params={"a1-hash": a1_hash("1002", DOMAIN, "pa55")})
    assert switch.register("1002", DOMAIN, password="pa55").ok
    assert switch.register("1002", DOMAIN, password="pa56").code == 403
    # FreeSWITCH feeds the stored a1-hash into the digest as written: upper case never matches.
    serve("1003", "", params={"a1-hash": a1_hash("1003", DOMAIN, "pa55").upper()})
    assert switch.register("1003", DOMAIN, password="pa55").code == 403


def test_auth_acl(switch: Switch) -> None:
    serve("1004", params={"auth-acl": "192.168.0.0/24, 10.0.0.5/32"})
    assert switch.register("1004", DOMAIN, network_ip="192.168.0.77").ok
    assert switch.register("1004", DOMAIN, network_ip="10.0.0.5").ok
    assert switch.register("1004", DOMAIN, network_ip="192.168.1.77").code == 403


def test_empty_auth_acl_refuses_every_phone(switch: Switch) -> None:
    """mod_sofia takes a present auth-acl param as is: value "" is an ACL named "", which
    exists nowhere, so every address is "Rejected by user acl []" (F1, seen on a real 1.10.12
    with seed 003's record)."""
    serve("1013", params={"auth-acl": ""})
    for ip in ("127.0.0.1", "192.168.31.57", "10.0.0.5"):
        result = switch.register("1013", DOMAIN, network_ip=ip)
        assert result.code == 403 and "Rejected by user acl []" in result.reason
    assert not customs(switch, "sofia::register")
    assert customs(switch, "sofia::register_failure")
    assert any("Rejected by user acl []" in message for _, message in switch.log)


def test_auth_acl_is_a_list_name_or_cidrs(switch: Switch) -> None:
    # switch_check_network_list_ip: a named list, else CIDRs when the text has a '/'; a bare
    # address is neither and matches nothing.
    serve("1014", params={"auth-acl": "10.0.0.5"})
    assert switch.register("1014", DOMAIN, network_ip="10.0.0.5").code == 403
    serve("1015", params={"auth-acl": "rfc1918.auto"})
    assert switch.register("1015", DOMAIN, network_ip="172.16.3.4").ok
    assert switch.register("1015", DOMAIN, network_ip="8.8.8.8").code == 403
    serve("1016", params={"auth-acl": "no_such_list"})
    assert switch.register("1016", DOMAIN, network_ip="127.0.0.1").code == 403


def test_empty_a1_hash_next_to_a_password_never_matches(switch: Switch) -> None:
    # a1-hash="" is a hash (the empty string) to mod_sofia: the password is not used.
    serve("1017", "pw", params={"a1-hash": ""})
    assert switch.register("1017", DOMAIN, password="pw").code == 403
    serve("1018", "", params={"a1-hash": ""})  # no password, no hash: accepted outright
    assert switch.register("1018", DOMAIN, password="anything").ok


def test_sip_forbid_register(switch: Switch) -> None:
    serve("1005", params={"sip-forbid-register": "true"})
    assert switch.register("1005", DOMAIN).code == 403
    serve("1006", params={"sip-forbid-register": "false"})
    assert switch.register("1006", DOMAIN).ok


def test_user_agent_filter(switch: Switch) -> None:
    serve("1007", params={"user-agent-filter": "^Yealink"})
    assert switch.register("1007", DOMAIN, user_agent="Yealink SIP-T46S 66.85").ok
    assert switch.register("1007", DOMAIN, user_agent="MicroSIP/3.21").code == 403


def test_max_registrations_per_extension(switch: Switch) -> None:
    serve("1008", params={"max-registrations-per-extension": "2"})
    assert switch.register("1008", DOMAIN).ok
    assert switch.register("1008", DOMAIN).ok
    assert switch.register("1008", DOMAIN).code == 403
    assert switch.unregister("1008", DOMAIN) == 2
    assert switch.register("1008", DOMAIN).ok


def test_empty_password(switch: Switch) -> None:
    serve("1009", "")
    assert switch.register("1009", DOMAIN, password="anything").ok
    serve("1010", "", params={"allow-empty-password": "false"})
    assert switch.register("1010", DOMAIN, password="").code == 403


def test_number_alias(switch: Switch) -> None:
    serve("alice", attributes={"number-alias": "8001"})
    assert switch.register("alice", DOMAIN, password="1234",
                           behaviour=Behaviour(fail_with="USER_BUSY")).ok
    assert switch.api(f"originate user/8001@{DOMAIN} &park()") == "-ERR USER_BUSY\n"
    [register] = customs(switch, "sofia::register")
    assert register.headers["number_alias"] == "8001"


# ---------------------------------------------------------------- events -------------------
def test_register_event_has_the_seed_headers(switch: Switch) -> None:
    # Seed 003's template, as the XML fsapps' directory serves it (its empty auth-acl left
    # out: test_empty_auth_acl_refuses_every_phone).
    serve("121", "123",
          params={"allow-empty-password": "false", "sip-forbid-register": "false"},
          variables={"sip-force-contact": "NDLB-connectile-dysfunction-2.0",
                     "effective_caller_id_name": "121",
                     "sip-allow-multiple-registrations": "false", "sip-force-expires": "20",
                     "force_ping": "false"},
          attributes={"cacheable": "10000", "number-alias": "121"})
    result = switch.register("121", DOMAIN, password="123", user_agent="unknown",
                             network_ip="192.168.31.57", network_port=55458)
    assert result.ok
    [event] = customs(switch, "sofia::register")
    missing = [name for name in SEED_REGISTER_HEADERS if name not in event.headers]
    assert not missing
    # sofia_reg's fixed headers, then the v_event: aliases, "sip-" params, variables.
    assert [k for k in event.headers if k in SEED_REGISTER_HEADERS] == SEED_REGISTER_HEADERS
    assert event.headers["sip-forbid-register"] == "false"  # "sip-" params are copied too
    h = event.headers
    assert h["status"] == "Registered(AUTO-NAT-2.0)" and h["expires"] == "20"
    assert h["contact"] == ('"" <sip:121@192.168.31.57:55458;ob;fs_nat=yes;'
                            'fs_path=sip%3A121%40192.168.31.57%3A55458>')
    assert h["network-port"] == "55458" and h["username"] == "121"
    assert "password" not in h and "auth-acl" not in h
    assert h["Event-Name"] == "CUSTOM" and h["Event-Subclass"] == "sofia::register"


def test_plain_register_has_no_invented_headers(switch: Switch) -> None:
    serve("1011")
    assert switch.register("1011", DOMAIN, expires=600).ok
    h = customs(switch, "sofia::register")[0].headers
    assert h["status"] == "Registered(UDP)" and h["expires"] == "600"
    assert "force_ping" not in h and "sip-allow-multiple-registrations" not in h


def test_unregister_and_expire(switch: Switch) -> None:
    serve("1012")
    reg = switch.register("1012", DOMAIN).registration
    assert reg is not None
    assert switch.unregister("1012", DOMAIN) == 1
    [unreg] = customs(switch, "sofia::unregister")
    assert {k: unreg.headers[k] for k in ("profile-name", "from-user", "from-host", "call-id",
                                          "contact", "expires", "username", "realm")} == {
        "profile-name": "internal", "from-user": "1012", "from-host": DOMAIN,
        "call-id": reg.call_id, "contact": reg.contact, "expires": "0", "username": "1012",
        "realm": DOMAIN}
    reg2 = switch.register("1012", DOMAIN).registration
    assert reg2 is not None
    assert switch.unregister("1012", DOMAIN, expired=True) == 1
    [expire] = customs(switch, "sofia::expire")
    # mod_sofia's expire event names the user "user"/"host", not from-user/from-host.
    assert {k: expire.headers[k] for k in ("profile-name", "call-id", "user", "host",
                                           "contact", "user-agent")} == {
        "profile-name": "internal", "call-id": reg2.call_id, "user": "1012", "host": DOMAIN,
        "contact": reg2.contact, "user-agent": "fakefs-phone"}
    assert int(expire.headers["expires"]) > 0


# ---------------------------------------------------------------- XML and fallbacks --------
def test_xml_special_characters_round_trip(switch: Switch) -> None:
    password = "p&<>\"'w"
    name = "A&B <\"Boss\"> O'Neil"
    serve("1013", password, variables={"effective_caller_id_name": name})
    assert switch.register("1013", DOMAIN, password=password).ok
    assert switch.register("1013", DOMAIN, password="p&amp;<>\"'w").code == 403
    assert customs(switch, "sofia::register")[0].headers["effective_caller_id_name"] == name
    entry = switch.directory_lookup("1013", DOMAIN)
    assert entry is not None and entry.params["password"] == password


def test_malformed_xml_is_logged_and_static_xml_used(switch: Switch) -> None:
    switch.add_user("1014", DOMAIN, password="static")
    state.RESPONDER = lambda params: "<document><section name='directory'><domain"
    assert switch.register("1014", DOMAIN, password="static").ok
    assert any(level == "ERR" and "Error Parsing XML" in msg for level, msg in switch.log)
    assert not switch.crashed


def test_empty_answer_and_exception_fall_back_to_static(switch: Switch) -> None:
    switch.add_user("1015", DOMAIN, password="static")
    state.RESPONDER = lambda params: ""
    assert switch.register("1015", DOMAIN, password="static").ok

    def boom(params: object) -> str:
        raise RuntimeError("redis down")
    state.RESPONDER = boom
    assert switch.register("1015", DOMAIN, password="static").ok
    assert any("redis down" in err for err in switch.python_errors)
    assert not switch.crashed


def test_one_argument_xml_fetch_fails_and_falls_back(switch: Switch) -> None:
    switch.xml_bindings[:] = [("fakefs_bindings.one_arg", {"directory"})]
    switch.add_user("1016", DOMAIN, password="static")
    assert switch.register("1016", DOMAIN, password="static").ok
    assert any("TypeError" in err for err in switch.python_errors)


def test_not_found_document_falls_back_but_a_served_domain_is_final(switch: Switch) -> None:
    switch.add_user("1017", DOMAIN, password="static")
    # "not found": next binding, then the static XML.
    assert switch.register("1017", DOMAIN, password="static").ok
    # A document that serves the domain without the user: the user does not exist, even
    # though the static XML has it (switch_xml_locate stops at the first real answer).
    state.RESPONDER = lambda params: state.document(DOMAIN, {"other": {}})
    assert switch.register("1017", DOMAIN, password="static").code == 403
    # A document for another domain: the static XML is searched.
    state.RESPONDER = lambda params: state.document("elsewhere.test", {"1017": {}})
    assert switch.register("1017", DOMAIN, password="static").ok


def test_none_crashes_the_switch(switch: Switch) -> None:
    state.RESPONDER = lambda params: None
    with pytest.raises(SwitchCrashed):
        switch.register("1018", DOMAIN, password="x")
    assert switch.crashed and "None" in switch.crashed


# ---------------------------------------------------------------- cacheable ----------------
def test_cacheable_ms_then_flush(switch: Switch) -> None:
    serve("1019", attributes={"cacheable": "60000"})
    assert switch.register("1019", DOMAIN).ok
    assert switch.register("1019", DOMAIN).ok
    assert switch.directory_lookup("1019", DOMAIN, "user_call") is not None
    assert len(state.calls("1019")) == 1
    assert switch.api(f"xml_flush_cache id 1019 {DOMAIN}") == "+OK cleared 1 entry\n"
    assert switch.api(f"xml_flush_cache id 1019 {DOMAIN}") == "+OK cleared 0 entries\n"
    assert switch.register("1019", DOMAIN).ok
    assert len(state.calls("1019")) == 2


def test_cacheable_expires(switch: Switch) -> None:
    serve("1020", attributes={"cacheable": "30"})
    assert switch.directory_lookup("1020", DOMAIN) is not None
    assert switch.directory_lookup("1020", DOMAIN) is not None
    assert len(state.calls("1020")) == 1
    wait_until(lambda: switch.directory_lookup("1020", DOMAIN) and len(state.calls("1020")) > 1,
               timeout=2.0, message="cache entry expiring after 30 ms")


def test_cacheable_true_keeps_until_flushed(switch: Switch) -> None:
    serve("1021", attributes={"cacheable": "true"})
    serve("1022", attributes={"cacheable": "true"})
    for _ in range(3):
        assert switch.directory_lookup("1021", DOMAIN) is not None
    assert switch.directory_lookup("1022", DOMAIN) is not None
    assert len(state.calls("1021")) == 1
    # Anything but "<key> <user> <domain>" empties the whole cache.
    assert switch.api("xml_flush_cache id 1021") == "+OK cleared 2 entries\n"
    assert switch.directory_lookup("1021", DOMAIN) is not None
    assert len(state.calls("1021")) == 2


def test_no_cacheable_calls_python_every_time(switch: Switch) -> None:
    serve("1023")
    for _ in range(3):
        assert switch.register("1023", DOMAIN).ok
    assert len(state.calls("1023")) == 3


def test_cache_is_keyed_by_the_name_asked_for(switch: Switch) -> None:
    serve("bob", attributes={"cacheable": "60000", "number-alias": "8002"})
    assert switch.directory_lookup("8002", DOMAIN) is not None
    assert switch.directory_lookup("bob", DOMAIN) is not None
    assert len(state.calls()) == 2
    assert switch.api(f"xml_flush_cache id bob {DOMAIN}") == "+OK cleared 1 entry\n"
    assert switch.directory_lookup("8002", DOMAIN) is not None
    assert len(state.calls()) == 2


# ---------------------------------------------------------------- dialling -----------------
def test_dialling_reaches_the_registered_phone_until_it_unregisters(switch: Switch) -> None:
    serve("1024")
    assert switch.api(f"originate user/1024@{DOMAIN} &park()") == "-ERR USER_NOT_REGISTERED\n"
    assert switch.register("1024", DOMAIN, behaviour=Behaviour(fail_with="CALL_REJECTED")).ok
    assert switch.api(f"originate user/1024@{DOMAIN} &park()") == "-ERR CALL_REJECTED\n"
    switch.unregister("1024", DOMAIN)
    assert switch.register("1024", DOMAIN, behaviour=Behaviour(answer_after_ms=50)).ok
    reply = switch.api(f"originate user/1024@{DOMAIN} &park()")
    assert reply.startswith("+OK ")
    leg = switch.channels[reply.split()[1].strip()]
    assert leg.answered and leg.name == "sofia/internal/1024@127.0.0.1"
    switch.api(f"uuid_kill {leg.uuid}")
    wait_until(lambda: not switch.channels, 2.0, "leg gone")
    switch.unregister("1024", DOMAIN)
    assert switch.api(f"originate user/1024@{DOMAIN} &park()") == "-ERR USER_NOT_REGISTERED\n"
    assert switch.api(f"originate user/9999@{DOMAIN} &park()") == "-ERR SUBSCRIBER_ABSENT\n"
