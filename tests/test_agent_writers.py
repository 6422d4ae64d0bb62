"""The agent module is the only writer of agent state (issue 14).

- No module of fsapps other than fsapps/domain/agents.py writes an agent hash (hset, hsetnx,
  hdel, delete, ... on a ``.agent(...)`` key) or runs one of the agent module's scripts; no
  Lua script outside that module's list sets ``call_state``, and every one that does checks
  the transition table.
- The Lua transition table (fsapps/store/lua/include/agent_rules.lua) equals
  :data:`fsapps.domain.agent_state.TRANSITIONS`; the Lua ``after_no_answer`` and ``agent_free``
  (availability) agree with :func:`~fsapps.domain.agent_state.after_no_answer` and
  :meth:`~fsapps.domain.agents.Agent.available` on the same inputs, against a real Redis.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from fsapps.domain import agents as agents_module
from fsapps.domain.agent_state import TRANSITIONS, CallState, IllegalTransition, after_no_answer
from fsapps.domain.agent_state import check as check_transition
from fsapps.domain.agents import Agent
from fsapps.store.scripts import INCLUDE_DIR, LUA_DIR

FSAPPS = Path(agents_module.__file__).resolve().parents[1]
AGENT_MODULE = Path(agents_module.__file__).resolve()
# Redis commands that change a key (what a writer of the agent hash would call).
WRITES = frozenset({"hset", "hsetnx", "hmset", "hdel", "hincrby", "hincrbyfloat", "delete",
                    "unlink", "expire", "pexpire", "rename", "set"})


def agent_writes(source: str) -> list[str]:
    """Where ``source`` writes an agent key (a write command whose arguments build a key with
    ``.agent(...)``) or runs one of the agent module's scripts: "line N: what"."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute | ast.Name):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if name in WRITES:
            for argument in arguments:
                if any(isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                       and inner.func.attr == "agent" for inner in ast.walk(argument)):
                    found.append(f"line {node.lineno}: {name} on an agent key")
                    break
        if name == "run_script" and len(node.args) >= 2 and \
                isinstance(node.args[1], ast.Constant) and \
                node.args[1].value in agents_module.SCRIPTS:
            found.append(f"line {node.lineno}: runs the agent script {node.args[1].value!r}")
    return found


_HSET_CALL_STATE = re.compile(r"redis\.call\(\s*'HSET'[^)]*'call_state'", re.DOTALL)


def sets_call_state(lua: str) -> bool:
    return _HSET_CALL_STATE.search(lua) is not None


def test_the_scan_finds_a_writer() -> None:
    """The scan itself: it sees direct writes and script runs, and not reads."""
    source = ("r.hset(keys.agent(ext), 'call_state', 'ready')\n"
              "pipe.hdel(ctx.keys(d).agent(e), 'x')\n"
              "run_script(r, 'agent_release', [k], [])\n"
              "r.hget(keys.agent(ext), 'groups')\n"
              "pipe.hmget(keys.agent(ext), ['a'])\n")
    assert [line.split(":")[0] for line in agent_writes(source)] == ["line 1", "line 2",
                                                                      "line 3"]
    assert sets_call_state("redis.call('HSET', KEYS[1], 'seat_status', 'idle',\n"
                           "  'call_state', 'ready')")
    assert not sets_call_state("redis.call('HGET', KEYS[1], 'call_state')")


def test_only_the_agent_module_writes_an_agent_hash() -> None:
    writers = {}
    for path in sorted(FSAPPS.rglob("*.py")):
        if path.resolve() == AGENT_MODULE:
            continue
        found = agent_writes(path.read_text(encoding="utf-8"))
        if found:
            writers[str(path.relative_to(FSAPPS.parent))] = found
    assert writers == {}, "agent hash written outside fsapps/domain/agents.py (use Agents)"


def test_only_the_agent_scripts_set_call_state_and_each_checks_the_table() -> None:
    setters = {path.stem for path in LUA_DIR.glob("*.lua")
               if sets_call_state(path.read_text(encoding="utf-8"))}
    assert setters, "the scan found no script setting call_state: it is broken"
    assert setters <= set(agents_module.SCRIPTS), \
        f"scripts outside the agent module set call_state: {setters - set(agents_module.SCRIPTS)}"
    for name in sorted(setters):
        source = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
        assert "--#include agent_rules" in source, f"{name}.lua does not include agent_rules"
        assert "agent_may_move(" in source or "--#include agent_take_call" in source, \
            f"{name}.lua sets call_state without checking the transition table"
    take_call = (INCLUDE_DIR / "agent_take_call.lua").read_text(encoding="utf-8")
    assert sets_call_state(take_call) and "agent_may_move(" in take_call
    assert set(agents_module.SCRIPTS) <= {path.stem for path in LUA_DIR.glob("*.lua")}


# ---------------------------------------------------------------- the Lua rules in Redis ---
@pytest.fixture
def r(redis_client: redis.Redis, redis_server: object) -> redis.Redis:
    return redis_client


def run_rules(r: redis.Redis, body: str, keys: Sequence[str] = (),
              args: Sequence[object] = ()) -> Any:
    """Run ``body`` after the agent_rules snippet, as the agent scripts run it."""
    rules = (INCLUDE_DIR / "agent_rules.lua").read_text(encoding="utf-8")
    return r.eval(f"{rules}\n{body}", len(keys), *keys, *args)


def test_lua_transition_table_equals_agent_state(r: redis.Redis) -> None:
    raw = run_rules(r, "return cjson.encode(AGENT_TRANSITIONS)")
    table = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    lua = {state: {target for target, allowed in targets.items() if allowed}
           for state, targets in table.items()}
    assert lua == {state.value: {target.value for target in targets}
                   for state, targets in TRANSITIONS.items()}


def test_lua_may_move_agrees_with_check_for_every_pair(r: redis.Redis) -> None:
    pairs = list(itertools.product([s.value for s in CallState], repeat=2))
    flat = [value for pair in pairs for value in pair]
    answers = run_rules(r, "local out = {}\n"
                           "for i = 1, #ARGV, 2 do\n"
                           "  out[#out + 1] = agent_may_move(ARGV[i], ARGV[i + 1]) and 1 or 0\n"
                           "end\n"
                           "return out", args=flat)
    for (current, wanted), answer in zip(pairs, answers, strict=True):
        try:
            check_transition(current, wanted)
            allowed = True
        except IllegalTransition:
            allowed = False
        assert bool(answer) == allowed, (current, wanted)


def test_lua_after_no_answer_agrees_with_agent_state(r: redis.Redis) -> None:
    grid = [(misses, limit) for misses in range(0, 6) for limit in range(0, 5)]
    flat = [n for pair in grid for n in pair]
    answers = run_rules(r, "local out = {}\n"
                           "for i = 1, #ARGV, 2 do\n"
                           "  out[#out + 1] = agent_after_no_answer(tonumber(ARGV[i]), "
                           "tonumber(ARGV[i + 1]))\n"
                           "end\n"
                           "return out", args=flat)
    lua = [a.decode() if isinstance(a, bytes) else a for a in answers]
    assert lua == [after_no_answer(misses, limit).value for misses, limit in grid]


def test_availability_is_one_rule_lua_and_python_agree(r: redis.Redis) -> None:
    """agent_free (what the scripts that pick agents apply) and Agent.available (reports)
    on the same hashes: every combination of the fields the rule reads."""
    now = 1_000_000
    key = "fsapps:{test}:agent:1001"
    combos = itertools.product(
        [None, "1", "0"], ["0", "1"], ["reged", "unreg"], ["idle", "busy"],
        [s.value for s in CallState], [None, "", "0", str(now - 1), str(now + 1)])
    checked = 0
    for enabled, logged_in, reg_state, seat, call_state, lease in combos:
        fields: dict[Any, Any] = {"extension": "1001", "logged_in": logged_in,
                                  "reg_state": reg_state, "seat_status": seat,
                                  "call_state": call_state}
        if enabled is not None:
            fields["enabled"] = enabled
        if lease is not None:
            fields["lease_until"] = lease
        r.delete(key)
        r.hset(key, mapping=fields)
        lua = run_rules(r, "return agent_free(redis.call('HMGET', KEYS[1], "
                           "unpack(AGENT_FREE_FIELDS)), tonumber(ARGV[1])) and 1 or 0",
                        keys=[key], args=[now])
        python = Agent.from_hash(fields).available(now)
        assert bool(lua) == python, fields
        checked += 1
    assert checked == 3 * 2 * 2 * 2 * len(CallState) * 5
