-- agent_rules: the rules every agent script applies (pulled in by `--#include agent_rules`).
-- The call-state transition table is fsapps/domain/agent_state.py's TRANSITIONS, written
-- out for Lua; tests/test_agent_writers.py checks the two are equal.
local AGENT_TRANSITIONS = {
  ready = {ring = true, talking = true, ivr = true, busy = true, rest = true, no_ready = true},
  ring = {talking = true, no_answer = true, ready = true, busy = true, typing = true},
  talking = {typing = true, ready = true, ivr = true, talking = true},
  ivr = {talking = true, typing = true, ready = true, busy = true, rest = true,
         no_ready = true},
  typing = {ready = true, ring = true, talking = true, busy = true, rest = true,
            no_ready = true},
  no_answer = {ready = true, busy = true, rest = true, no_ready = true},
  busy = {ready = true, ring = true, talking = true, rest = true, no_ready = true,
          typing = true},
  rest = {ready = true, busy = true, no_ready = true, talking = true, ring = true},
  no_ready = {ready = true, busy = true, rest = true, talking = true, ring = true},
}

-- May an agent in call state `current` move to `wanted`? (Staying put always may; an agent
-- without a hash, or in a state the table does not know, may not move.)
local function agent_may_move(current, wanted)
  if not current or not AGENT_TRANSITIONS[current] or not AGENT_TRANSITIONS[wanted] then
    return false
  end
  return current == wanted or AGENT_TRANSITIONS[current][wanted] == true
end

-- Where an agent goes once an offer rang out (agent_state.after_no_answer): ready, or busy
-- after `limit` misses in a row (0 = never).
local function agent_after_no_answer(misses, limit)
  if limit > 0 and misses >= limit then
    return 'busy'
  end
  return 'ready'
end

-- Availability, the one rule: a queue call may be offered to an agent that is enabled,
-- logged in, registered, with its seat idle, and ready. Not in wrap-up (typing), not on a
-- call, not paused - and not "ring", even on a reservation whose lease ran out: an answered
-- agent stays "ring" until its CHANNEL_ANSWER reaches the runtime, which a loaded switch
-- delivers seconds late. Only a reconciler frees a reservation, once the switch that owns it
-- says the agent has no live leg (runtime.py). Nor ready while the switch has not told the
-- end of its last leg (leg_pending): the leg is down when the bridge returns, but the thread
-- ending it may not have sent its hangup yet. Agent.available in agents.py is the same rule
-- for reports; tests/test_agent_writers.py checks both agree on the same hashes.
-- AGENT_FREE_FIELDS: what to HMGET from the agent hash for agent_free, in this order.
local AGENT_FREE_FIELDS = {'enabled', 'logged_in', 'reg_state', 'seat_status', 'call_state',
                           'leg_pending'}
local function agent_free(a)
  if a[1] == '0' or a[2] ~= '1' or a[3] ~= 'reged' or a[4] ~= 'idle' then
    return false
  end
  return a[5] == 'ready' and (a[6] or '') == ''
end
