"""``fsapps ext import/export/set/rm/show`` against a real Redis."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import redis
import yaml

from fsapps import cli
from fsapps.store.keys import exten_alias_hash, seed_exten_hash
from tools.servers import RedisServer

DOMAIN = "cc.test"


@pytest.fixture
def conf(tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis) -> str:
    path = tmp_path / "fsapps.yaml"
    path.write_text(f"redis:\n  url: {redis_server.url}\n  key_prefix: t\n"
                    f"domains: [{DOMAIN}, other.test]\ndefault_domain: {DOMAIN}\n",
                    encoding="utf-8")
    return str(path)


def run(conf: str, *args: str) -> int:
    return cli.main(["--config", conf, "ext", *args])


def records(client: redis.Redis, domain: str = DOMAIN) -> dict[str, dict[str, object]]:
    return {k.decode(): json.loads(v) for k, v in client.hgetall(seed_exten_hash(domain)).items()}


def test_csv_import_export_round_trip(conf: str, tmp_path: Path, redis_client: redis.Redis,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "exts.csv"
    with source.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "param.password", "variable.effective_caller_id_name",
                         "attribute.number-alias", "attribute.cacheable"])
        for n in range(3000):
            writer.writerow([str(10000 + n), f"pw&<{n}>", f'Agent "{n}"',
                             f"8{n:04d}" if n % 2 else "", "60000" if n == 7 else ""])
    assert run(conf, "import", str(source)) == 0
    err = capsys.readouterr().err
    assert "import 3000/3000" in err and "3000 extension(s) imported" in err

    stored = records(redis_client)
    assert len(stored) == 3000
    assert stored["10007"] == {"param": {"password": "pw&<7>"},
                               "variable": {"effective_caller_id_name": 'Agent "7"'},
                               "attribute": {"number-alias": "80007", "cacheable": "60000"}}
    assert redis_client.hlen(exten_alias_hash("t", DOMAIN)) == 1500

    out = tmp_path / "out.csv"
    assert run(conf, "export", "-o", str(out)) == 0
    redis_client.delete(seed_exten_hash(DOMAIN), exten_alias_hash("t", DOMAIN))
    assert run(conf, "import", str(out)) == 0
    assert records(redis_client) == stored
    assert redis_client.hlen(exten_alias_hash("t", DOMAIN)) == 1500


def test_yaml_round_trip_through_stdout(conf: str, tmp_path: Path, redis_client: redis.Redis,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "exts.yaml"
    source.write_text('"1001":\n  param: {password: "a\'b", sip-forbid-register: false}\n'
                      "  attribute: {number-alias: myphone}\n"
                      '"1002":\n  variable: {sip-force-contact: NDLB-connectile-dysfunction-2.0}\n',
                      encoding="utf-8")
    assert run(conf, "import", str(source)) == 0
    capsys.readouterr()
    assert run(conf, "export", "--format", "yaml") == 0
    exported = yaml.safe_load(capsys.readouterr().out)
    assert exported == {
        "1001": {"param": {"password": "a'b", "sip-forbid-register": "false"},
                 "attribute": {"number-alias": "myphone"}},
        "1002": {"variable": {"sip-force-contact": "NDLB-connectile-dysfunction-2.0"}},
    }


def test_bad_rows_are_reported_with_line_numbers(conf: str, tmp_path: Path,
                                                 redis_client: redis.Redis,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("user,param.password,attribute.number-alias\n"
                      "1001,pw,\n"
                      "10 02,pw,\n"
                      "1003,pw\n"
                      "1001,again,\n"
                      "1004,pw,bad alias\n"
                      "1005,pw,2001\n", encoding="utf-8")
    assert run(conf, "import", str(source)) == 1
    err = capsys.readouterr().err
    assert "line 3: invalid extension '10 02'" in err
    assert "line 4: 2 cells, the header has 3" in err
    assert "line 5: extension '1001' already on line 2" in err
    assert "line 6: invalid extension 'bad alias'" in err
    assert "nothing imported" in err
    assert records(redis_client) == {}

    assert run(conf, "import", "--skip-bad", str(source)) == 1
    assert set(records(redis_client)) == {"1001", "1005"}

    yaml_source = tmp_path / "bad.yaml"
    yaml_source.write_text('"2001":\n  param: {password: pw}\n'
                           '"2002":\n  params: {password: pw}\n'
                           '"2003":\n  attribute: {number-alias: "2001"}\n', encoding="utf-8")
    capsys.readouterr()
    assert run(conf, "import", str(yaml_source)) == 1
    err = capsys.readouterr().err
    assert "line 3: extension '2002': unknown section(s) ['params']" in err

    # an alias conflict is found while writing: that row is refused, with its line
    conflict = tmp_path / "conflict.csv"
    conflict.write_text("user,attribute.number-alias\n2005,1005\n2006,9999\n",
                        encoding="utf-8")
    assert run(conf, "import", str(conflict)) == 1
    err = capsys.readouterr().err
    assert "line 2: number-alias 1005 is an extension" in err
    assert "2006" in records(redis_client) and "2005" not in records(redis_client)


def test_set_show_rm(conf: str, redis_client: redis.Redis,
                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(conf, "set", "1001", "--password", "pw", "--variable",
               "effective_caller_id_name=Alice", "--attribute", "number-alias=2001") == 0
    assert run(conf, "set", "1001", "--param", "auth-acl=10.0.0.0/8",
               "--variable", "effective_caller_id_name=") == 0
    capsys.readouterr()
    assert run(conf, "show", "2001") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"user": "1001", "domain": DOMAIN,
                     "param": {"password": "pw", "auth-acl": "10.0.0.0/8"},
                     "variable": {}, "attribute": {"number-alias": "2001"}}

    assert run(conf, "set", "1001", "--replace", "--json",
               '{"param": {"password": "new"}}') == 0
    assert records(redis_client)["1001"] == {"param": {"password": "new"}, "variable": {},
                                             "attribute": {}}
    assert redis_client.hlen(exten_alias_hash("t", DOMAIN)) == 0

    assert run(conf, "--domain", "other.test", "set", "1001", "--password", "x") == 0
    assert records(redis_client, "other.test")["1001"]["param"] == {"password": "x"}

    assert run(conf, "set", "1001", "--param", "novalue") == 1
    assert run(conf, "rm", "1001") == 0
    assert run(conf, "rm", "1001") == 1
    assert run(conf, "show", "1001") == 1
    assert "no extension '1001'" in capsys.readouterr().err
    assert run(conf, "--domain", "nope.test", "show", "1001") == 1


def test_export_skips_malformed_records(conf: str, redis_client: redis.Redis,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    redis_client.hset(seed_exten_hash(DOMAIN), mapping={"1001": '{"param": {"password": "x"}}',
                                                         "1002": "{broken"})
    assert run(conf, "export") == 1
    captured = capsys.readouterr()
    assert list(csv.reader(io.StringIO(captured.out))) == [["user", "param.password"],
                                                           ["1001", "x"]]
    assert "'1002'" in captured.err
