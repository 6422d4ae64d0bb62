-- agent_announce: an agent script tells subscribers of agent_<ext> the call states it moved the
-- agent to itself (pulled in by `--#include agent_announce`), in the same atomic step as the
-- move. Told by the caller after the script returned, a "ready" could reach them after the
-- "ring" of the next call another thread's script offered the agent in between (the agent
-- looked ready while it rang). `channel` and `template` come from ARGV: the message as
-- fsapps.events.pubsub renders it, with {{status}} where the state goes ('' = tell nothing).
-- PUBLISH takes a channel, not a key.
local function agent_announce(channel, template, status)
  if not channel or channel == '' or not template or template == '' then
    return
  end
  local text = string.gsub(template, '{{status}}', status)
  redis.call('PUBLISH', channel, text)
end
