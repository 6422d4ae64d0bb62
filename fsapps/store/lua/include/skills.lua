-- skills: skills-based routing, the rule of fsapps/domain/skills.py written out for Lua (pulled
-- in by `--#include skills`, before agent_take_call). No redis.call here: the including script
-- reads the agent's `skills` field and the group's `skill_relax_seconds` with what it reads
-- anyway.
-- An agent qualifies for a call when it has every required skill at the required level or
-- higher. The requirement relaxes with the caller's wait: every `relax_s` seconds one step -
-- first every required level one lower (down to 1), then the last-named skill dropped.

-- An agent's `skills` field ("english:3,billing:5") -> {english = 3, billing = 5}
local function skills_of(text)
  local have = {}
  for name, level in string.gmatch(text or '', '([^,:]+):(%d+)') do
    have[name] = tonumber(level)
  end
  return have
end

-- A call's waiting JSON, decoded -> its requirement {{name, level}, ...} (most important
-- first); a malformed entry is left out (the handler checked the variable before).
local function skills_required(call)
  local required = {}
  if type(call) ~= 'table' or type(call.skills) ~= 'table' then
    return required
  end
  for _, item in ipairs(call.skills) do
    if type(item) == 'table' and type(item[1]) == 'string' and type(item[2]) == 'number' then
      required[#required + 1] = {item[1], item[2]}
    end
  end
  return required
end

-- The requirement after the caller waited `waited` ms, with `relax_s` (the group's
-- skill_relax_seconds; 0 or less = never relax).
local function skills_relaxed(required, waited, relax_s)
  if #required == 0 or not relax_s or relax_s <= 0 or waited <= 0 then
    return required
  end
  local steps = math.floor(waited / (relax_s * 1000))
  if steps <= 0 then
    return required
  end
  local top = 1
  for _, r in ipairs(required) do
    if r[2] > top then
      top = r[2]
    end
  end
  local lowering = math.min(steps, top - 1)
  local dropped = steps - lowering
  local out = {}
  for i = 1, #required - dropped do
    out[#out + 1] = {required[i][1], math.max(1, required[i][2] - lowering)}
  end
  return out
end

-- Does an agent with `have` (skills_of) meet `required`?
local function skills_meet(have, required)
  for _, r in ipairs(required) do
    if (have[r[1]] or 0) < r[2] then
      return false
    end
  end
  return true
end
