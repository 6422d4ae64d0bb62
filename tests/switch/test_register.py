"""REGISTER through fsapps' directory in a real FreeSWITCH: right and wrong passwords, the seed
003 example record verbatim, a cacheable record and its flush."""

from __future__ import annotations

import json

from switch.conftest import DOMAIN, PASSWORD, Stack, wait_for
from tools import sipp
from tools.realswitch import RealSwitch


def _register(sw: RealSwitch, phones: Stack, ext: str, password: str) -> int:
    reg = sipp.register(sw.internal_port, ext, password, DOMAIN, contact_port=5999)
    phones.sipps.append(reg)
    return reg.wait(20)


def test_right_password_registers_and_wrong_one_is_refused(fs1: RealSwitch, phones: Stack
                                                            ) -> None:
    phones.extension("2101")
    assert _register(fs1, phones, "2101", PASSWORD) == 0
    record = json.loads(str(wait_for(lambda: phones.redis.hget("registrations", "2101"), 10)))
    assert record["Event-Subclass"] == "sofia::register"
    userinfo = json.loads(str(wait_for(
        lambda: phones.redis.hget(f"cti_userinfo@{DOMAIN}", "2101"), 10)))
    assert userinfo["FreeSWITCH-Switchname"] == "fs1"
    assert userinfo["register"]["node"] == "fs1"

    phones.extension("2102")
    assert _register(fs1, phones, "2102", "not-the-password") != 0
    assert phones.redis.hget("registrations", "2102") is None


def test_unknown_user_is_refused(fs1: RealSwitch, phones: Stack) -> None:
    assert _register(fs1, phones, "2199", PASSWORD) != 0
    assert phones.redis.hget("registrations", "2199") is None


def test_seed_003_example_record_verbatim_registers(fs1: RealSwitch, phones: Stack) -> None:
    """F1: the seed's record has ``"auth-acl": ""``; mod_sofia would check the phone against
    an ACL named "" and refuse it if fsapps rendered the empty param."""
    seed_record = {
        "param": {"allow-empty-password": False, "password": "123", "auth-acl": "",
                  "sip-forbid-register": False},
        "variable": {"sip-force-contact": "NDLB-connectile-dysfunction-2.0"},
        "attribute": {"cacheable": "10000", "number-alias": "myphone"},
    }
    phones.extension("2103", record=seed_record)
    assert _register(fs1, phones, "2103", "123") == 0
    wait_for(lambda: phones.redis.hget("registrations", "2103"), 10, "2103 registered")
    assert "Rejected by user acl" not in fs1.log_text()


def test_cacheable_record_is_served_from_cache_until_flushed(fs1: RealSwitch, phones: Stack
                                                              ) -> None:
    phones.extension("2104", record={"param": {"password": "first-pw"},
                                     "attribute": {"cacheable": "600000"}})
    assert _register(fs1, phones, "2104", "first-pw") == 0
    # Changed behind the switch's back: the cached record still answers...
    phones.extension("2104", record={"param": {"password": "second-pw"},
                                     "attribute": {"cacheable": "600000"}})
    assert _register(fs1, phones, "2104", "first-pw") == 0
    # ...until it is flushed, as fsapps' own changes do on every node.
    assert fs1.api(f"xml_flush_cache id 2104 {DOMAIN}").startswith("+OK")
    assert _register(fs1, phones, "2104", "first-pw") != 0
    assert _register(fs1, phones, "2104", "second-pw") == 0
