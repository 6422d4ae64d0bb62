"""Seed 003's Redis directory through the switch: fakefs phones REGISTER (and are dialled) with
credentials that fsapps.directory serves from ``cti_exten@<domain>`` (python.conf.xml binds
it), with mod_sofia's checks applied by fakefs; caching and its flush on every node; escaping;
malformed and unknown entries."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from fakefs.directory import a1_hash
from fakefs.scenario import wait_until
from fakefs.switch import Switch
from fsapps import directory
from fsapps.domain import userdir
from fsapps.domain.userdir import NOT_FOUND, UserDirectory, parse_record
from fsapps.store.keys import exten_alias_hash, seed_exten_hash
from tests.acd_support import DOMAIN, CallCenter, center
from tools.servers import FreshDatabase, RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_switch_threads")


@pytest.fixture
def cc(redis_server: RedisServer, database: FreshDatabase) -> Iterator[CallCenter]:
    yield from center(redis_server.url, database.dsn)


@pytest.fixture
def sw(cc: CallCenter) -> Switch:
    return cc.start_switch()


def put(cc: CallCenter, user: str, record: dict[str, Any]) -> userdir.Extension:
    ext = parse_record(user, DOMAIN, record)
    UserDirectory(cc.ctx, DOMAIN).set(ext)
    return ext


def register(sw: Switch, user: str, password: str, **kwargs: Any) -> Any:
    return sw.register(user, DOMAIN, password=password, **kwargs)


# ---------------------------------------------------------------- REGISTER auth -------------
def test_register_with_the_password_from_redis(cc: CallCenter, sw: Switch) -> None:
    put(cc, "1001", {"param": {"password": "s3cret"}})

    assert register(sw, "1001", "s3cret").ok
    refused = register(sw, "1001", "wrong")
    assert (refused.code, refused.reason) == (403, "wrong password")
    assert not register(sw, "1099", "s3cret").ok  # not in Redis, not in the static XML


def test_register_with_an_a1_hash(cc: CallCenter, sw: Switch) -> None:
    put(cc, "1002", {"param": {"a1-hash": a1_hash("1002", DOMAIN, "pw2")}})

    assert register(sw, "1002", "pw2").ok
    assert register(sw, "1002", "pw3").reason == "a1-hash mismatch"


@pytest.mark.parametrize(("param", "kwargs", "refusal"), [
    ({"auth-acl": "10.0.0.0/8"}, {"network_ip": "192.168.1.5"}, "auth-acl"),
    ({"sip-forbid-register": True}, {}, "sip-forbid-register"),
    ({"user-agent-filter": "^Yealink"}, {"user_agent": "Softphone 1.0"}, "user-agent-filter"),
])
def test_register_refused_by_the_records_checks(cc: CallCenter, sw: Switch, param: Any,
                                                kwargs: Any, refusal: str) -> None:
    put(cc, "1003", {"param": {"password": "pw", **param}})

    result = register(sw, "1003", "pw", **kwargs)
    assert result.code == 403 and result.reason.startswith(refusal)


def test_register_passes_the_checks_it_meets(cc: CallCenter, sw: Switch) -> None:
    put(cc, "1004", {"param": {"password": "pw", "auth-acl": "10.0.0.0/8",
                               "user-agent-filter": "^Yealink",
                               "sip-forbid-register": False}})

    assert register(sw, "1004", "pw", network_ip="10.1.2.3", user_agent="Yealink T46").ok


def test_max_registrations_per_extension(cc: CallCenter, sw: Switch) -> None:
    put(cc, "1005", {"param": {"password": "pw", "max-registrations-per-extension": 2}})

    assert register(sw, "1005", "pw").ok
    assert register(sw, "1005", "pw").ok
    assert register(sw, "1005", "pw").reason.startswith("max-registrations-per-extension")


# Seed 003's example record, verbatim (its "auth-acl": "" means "no ACL").
SEED_003_RECORD = {
    "param": {"allow-empty-password": False, "password": "123", "auth-acl": "",
              "sip-forbid-register": False},
    "variable": {"sip-force-contact": "NDLB-connectile-dysfunction-2.0"},
    "attribute": {"cacheable": "10000", "number-alias": "myphone"},
}


def test_seed_003_example_record_registers(cc: CallCenter, sw: Switch) -> None:
    """F1: mod_sofia reads auth-acl="" as an ACL named "" and refuses every phone; fsapps
    serves the seed's record without it, so the phone registers (fakefs refuses an empty
    auth-acl as sofia does: test_fakefs_directory.test_empty_auth_acl_refuses_every_phone)."""
    ext = put(cc, "121", SEED_003_RECORD)
    assert ext.param["auth-acl"] == ""  # the stored record is kept as given

    assert 'auth-acl' not in userdir.render(ext)
    result = register(sw, "121", "123", network_ip="192.168.31.57")
    assert result.ok, result.reason
    entry = sw.directory_lookup("121", DOMAIN)
    assert entry is not None and "auth-acl" not in entry.params
    assert register(sw, "myphone", "123").ok


@pytest.mark.parametrize(("section", "name"), [
    ("param", "auth-acl"), ("param", "a1-hash"), ("param", "user-agent-filter"),
    ("param", "sip-forbid-register"), ("param", "max-registrations-per-extension"),
    ("param", "allow-empty-password"), ("param", "dial-string"), ("param", "Auth-ACL"),
    ("variable", "sip-force-contact"), ("variable", "sip-force-expires"),
    ("param", "sip-force-contact"), ("attribute", "cacheable"),
    ("attribute", "number-alias"),
])
def test_empty_value_that_means_not_set_is_not_rendered(section: str, name: str) -> None:
    def user_names(record: dict[str, Any]) -> set[str]:
        text = userdir.render(parse_record("1001", DOMAIN, record))
        user = ET.fromstring(text).find("section/domain/users/user")
        assert user is not None
        return ({p.get("name", "") for p in user.iterfind("params/param")}
                | {v.get("name", "") for v in user.iterfind("variables/variable")}
                | set(user.attrib))

    assert name not in user_names({"param": {"password": "pw"}, section: {name: ""}})
    if name != "number-alias":  # a blank alias is refused when stored (not a user name)
        assert name not in user_names({section: {name: "  "}})
    assert name in user_names({section: {name: "10"}})  # a value is still rendered


def test_empty_values_fall_back_to_the_defaults(cc: CallCenter, sw: Switch) -> None:
    # cacheable="" lets directory.cacheable apply; dial-string="" keeps the domain's.
    ext = parse_record("1012", DOMAIN, {"param": {"password": "pw", "dial-string": ""},
                                        "attribute": {"cacheable": ""}})
    text = userdir.render(ext, "5000")
    assert 'cacheable="5000"' in text
    assert text.count('name="dial-string"') == 1
    put(cc, "1012", ext.record())
    entry = sw.directory_lookup("1012", DOMAIN, "user_call")
    assert entry is not None and entry.params["dial-string"] == userdir.DIAL_STRING


def test_other_empty_values_are_rendered_as_given() -> None:
    ext = parse_record("1001", DOMAIN, {"param": {"password": ""},
                                        "variable": {"effective_caller_id_name": ""}})
    text = userdir.render(ext)
    assert '<param name="password" value=""/>' in text
    assert '<variable name="effective_caller_id_name" value=""/>' in text


# ---------------------------------------------------------------- lookups -------------------
def test_number_alias_lookup_and_dial_string(cc: CallCenter, sw: Switch) -> None:
    put(cc, "alice", {"param": {"password": "pw"}, "attribute": {"number-alias": "2001"},
                      "variable": {"effective_caller_id_name": "Alice"}})

    entry = sw.directory_lookup("2001", DOMAIN, "user_call")
    assert entry is not None and entry.id == "alice"
    assert entry.variables == {"effective_caller_id_name": "Alice"}
    assert entry.params["dial-string"] == userdir.DIAL_STRING
    assert register(sw, "2001", "pw").ok
    assert cc.ctx.redis.hget(exten_alias_hash("t", DOMAIN), "2001") == "alice"


def test_alias_index_follows_set_and_remove(cc: CallCenter) -> None:
    directory_ = UserDirectory(cc.ctx, DOMAIN)
    aliases = exten_alias_hash("t", DOMAIN)
    put(cc, "alice", {"attribute": {"number-alias": "2001"}})
    put(cc, "alice", {"attribute": {"number-alias": "2002"}})
    assert cc.ctx.redis.hgetall(aliases) == {"2002": "alice"}

    with pytest.raises(userdir.AliasConflict, match="2002 belongs to alice"):
        put(cc, "bob", {"attribute": {"number-alias": "2002"}})
    with pytest.raises(userdir.AliasConflict, match="is an extension"):
        put(cc, "bob", {"attribute": {"number-alias": "alice"}})
    assert directory_.get("2002") is not None and directory_.get("bob") is None

    assert directory_.remove("alice") and not directory_.remove("alice")
    assert cc.ctx.redis.hgetall(aliases) == {}
    assert directory_.get("2002") is None


def test_xml_special_characters_round_trip(cc: CallCenter, sw: Switch) -> None:
    nasty = "a&b<c>d\"e'f ${x}"
    put(cc, "1006", {"param": {"password": nasty, "x&<\"'>": nasty},
                     "variable": {"effective_caller_id_name": nasty, "v<&>": nasty},
                     "attribute": {"mailbox": nasty}})

    entry = sw.directory_lookup("1006", DOMAIN)
    assert entry is not None
    assert entry.params["password"] == nasty and entry.params["x&<\"'>"] == nasty
    assert entry.variables == {"effective_caller_id_name": nasty, "v<&>": nasty}
    assert entry.attributes["mailbox"] == nasty
    assert register(sw, "1006", nasty).ok


def test_malformed_json_is_not_found_and_logged(cc: CallCenter, sw: Switch) -> None:
    cc.ctx.redis.hset(seed_exten_hash(DOMAIN), "1007", "{not json")
    cc.ctx.redis.hset(seed_exten_hash(DOMAIN), "1008", json.dumps({"param": ["x"]}))

    assert sw.directory_lookup("1007", DOMAIN) is None
    assert sw.directory_lookup("1008", DOMAIN) is None
    assert not register(sw, "1007", "pw").ok
    errors = [m for level, m in sw.log if level == "ERR" and "cti_exten@cc.test" in m]
    assert any("'1007'" in m and "malformed JSON" in m for m in errors), errors
    assert any("'1008'" in m for m in errors), errors


class Params:
    def __init__(self, **headers: str) -> None:
        self.headers = headers

    def getHeader(self, name: str) -> str | None:  # noqa: N802 - FreeSWITCH's name
        return self.headers.get(name)


def test_unknown_domain_user_or_section(cc: CallCenter, sw: Switch) -> None:
    put(cc, "1001", {"param": {"password": "pw"}})

    assert sw.directory_lookup("1001", "other.test") is None
    assert directory.xml_fetch(Params(section="directory", user="1001",
                                      domain="other.test"), "") == NOT_FOUND
    assert directory.xml_fetch(Params(section="directory", user="1099", domain=DOMAIN),
                               "") == NOT_FOUND
    assert directory.xml_fetch(Params(section="directory", domain=DOMAIN), "") == NOT_FOUND
    assert directory.xml_fetch(Params(section="dialplan"), "") == ""
    found = directory.xml_fetch(Params(section="directory", user="1001", domain=DOMAIN), "")
    assert '<user id="1001">' in found


def test_every_lookup_that_finds_nothing_logs_why_at_info(cc: CallCenter, sw: Switch) -> None:
    """An administrator whose phones get 403 has a line to go on (issue 17); passwords never
    appear in it."""
    put(cc, "1001", {"param": {"password": "s3cret-pw"}})

    assert not sw.register("1001", "192.168.1.10", password="s3cret-pw").ok  # IP as domain
    assert not register(sw, "1099", "s3cret-pw").ok
    assert sw.directory_lookup("bad user\n", DOMAIN) is None
    assert register(sw, "1001", "s3cret-pw").ok

    lines = [m for level, m in sw.log if level == "INFO" and "directory:" in m]
    assert any("user '1001' in domain '192.168.1.10' not found: domain not served "
               f"(domains: {DOMAIN}" in m for m in lines), lines
    assert any(f"user '1099' in domain '{DOMAIN}' not found: neither an extension nor a "
               f"number-alias in cti_exten@{DOMAIN}" in m for m in lines), lines
    assert any("user 'bad user\\n'" in m and "not a valid extension name" in m
               for m in lines), lines
    assert not any("'1001' in domain 'cc.test'" in m for m in lines), lines  # found: silent
    assert not any("s3cret" in m for _, m in sw.log)


def test_xml_fetch_never_raises_nor_returns_none(cc: CallCenter) -> None:
    class Broken:
        def getHeader(self, name: str) -> str:  # noqa: N802
            raise RuntimeError("boom")

    assert directory.xml_fetch(Broken(), "") == NOT_FOUND
    assert directory.xml_fetch(Params(section="directory", user="a b", domain=DOMAIN),
                               "") == NOT_FOUND


# ---------------------------------------------------------------- caching -------------------
def test_cacheable_is_honoured_and_flushed_on_every_node(cc: CallCenter) -> None:
    first, second = cc.start_switch(), cc.start_switch()
    put(cc, "1010", {"param": {"password": "old"}, "attribute": {"cacheable": "60000"}})
    for sw in (first, second):
        assert register(sw, "1010", "old").ok
        assert sw.directory_cache.get("1010", DOMAIN) is not None

    # Written behind fsapps' back: the switches keep serving their cached copy.
    raw = parse_record("1010", DOMAIN, {"param": {"password": "raw"},
                                        "attribute": {"cacheable": "60000"}})
    cc.ctx.redis.hset(seed_exten_hash(DOMAIN), "1010", raw.to_json())
    assert register(first, "1010", "old").ok

    put(cc, "1010", {"param": {"password": "new"}, "attribute": {"cacheable": "60000"}})
    for sw in (first, second):
        wait_until(lambda sw=sw: sw.directory_cache.get("1010", DOMAIN) is None, 5,
                   f"{sw.name} flushed 1010")
        assert register(sw, "1010", "new").ok
        assert not register(sw, "1010", "old").ok


def test_default_cacheable_from_the_settings(cc: CallCenter) -> None:
    ext = parse_record("1011", DOMAIN, {"param": {"password": "pw"}})
    assert 'cacheable="5000"' in userdir.render(ext, "5000")
    assert "cacheable" not in userdir.render(ext, "")
    own = parse_record("1011", DOMAIN, {"attribute": {"cacheable": "true"}})
    assert 'cacheable="true"' in userdir.render(own, "5000")


def test_a_lookup_runs_its_python_ahead_of_the_switch_and_gives_the_thread_back(
        cc: CallCenter, sw: Switch) -> None:
    """A ring's directory lookup runs on the caller's thread, which runs its media at the
    switch's priority: the lookup's Python goes one step ahead (python_priority, the
    default: fsapps.switch.priority), and the thread is the switch's again after it."""
    import dataclasses
    import os
    import threading

    from fsapps import context
    from fsapps.switch import priority

    context.configure(dataclasses.replace(cc.ctx.settings, python_priority="ahead"))
    put(cc, "1001", {"param": {"password": "pw"}})
    seen: dict[str, int] = {}

    class Watched(Params):
        def getHeader(self, name: str) -> str | None:  # noqa: N802 - FreeSWITCH's name
            seen.setdefault(name, os.getpriority(os.PRIO_PROCESS, 0))
            return super().getHeader(name)

    def lookup() -> None:
        found = directory.xml_fetch(Watched(section="directory", user="1001", domain=DOMAIN),
                                    "")
        assert '<user id="1001">' in found
        seen["after"] = os.getpriority(os.PRIO_PROCESS, 0)

    thread = threading.Thread(target=lookup)
    thread.start()
    thread.join()
    switch = priority.Scheduling.of_switch()
    ahead = switch.ahead()
    assert ahead is not None
    assert (seen["section"], seen["user"], seen["after"]) == \
        (switch.nice, ahead.nice, switch.nice)
