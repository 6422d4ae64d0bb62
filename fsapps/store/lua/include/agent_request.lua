-- agent_request: the agent scripts are safe to retry (pulled in by `--#include agent_request`;
-- KEYS[1] must be the agent hash). Every Redis command is retried after a timeout
-- (store/connection.py): when the script ran and only its reply was lost, the retry would
-- find the agent already changed and answer "nothing done" - and the caller skip what
-- follows (an agent left in no_answer, a woken caller never rung). So a script that changes
-- an agent takes a request id, fresh per call and the same in its retries: agent_repeat
-- returns the reply recorded for that id by the last request that ran on this agent (nil:
-- run), and agent_reply records the id and the reply in the agent hash (last_req,
-- last_reply) before returning it. An agent hash that does not exist is not created.
local function agent_repeat(req)
  if not req or req == '' then
    return nil
  end
  local last = redis.call('HMGET', KEYS[1], 'last_req', 'last_reply')
  if last[1] ~= req or not last[2] then
    return nil
  end
  return cjson.decode(last[2])
end

local function agent_reply(req, reply)
  if req and req ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'last_req', req, 'last_reply', cjson.encode(reply))
  end
  return reply
end
