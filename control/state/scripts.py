"""The Lua scripts of the shared stores: each check that reads and then writes runs as one
script, atomic in Redis, on Redis's clock (TIME), so replicas with drifting clocks agree."""

NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: buckets, checked in order; ARGV per_minute, amount, mode per key (check | take, when
# available | charge, always). Stops at the first bucket that has not room, as separate checks
# would: what was taken before it stays taken. Returns {index of that bucket or 0, seconds to
# wait} (the wait as a string: Redis would truncate a Lua number to an integer).
BUCKET = NOW + """
local t = now()
for i, key in ipairs(KEYS) do
  local per_minute, amount, mode = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), ARGV[3 * i]
  local saved = redis.call('HMGET', key, 'level', 'at', 'limit')
  local level, at = tonumber(saved[1]), tonumber(saved[2])
  if level == nil or tonumber(saved[3]) ~= per_minute then  -- a new key or a reloaded limit
    level, at = per_minute, t
  end
  level = math.min(per_minute, level + math.max(0, t - at) * per_minute / 60)
  local wait = 0
  if mode ~= 'charge' then
    wait = math.max(0, (math.min(amount, per_minute) - level) * 60 / per_minute)
  end
  if mode == 'charge' or (mode == 'take' and wait == 0) then
    level = level - amount
  end
  redis.call('HSET', key, 'level', tostring(level), 'at', tostring(t), 'limit', per_minute)
  -- a bucket left alone is full again after this long: then it is the same as no bucket
  redis.call('PEXPIRE', key, math.ceil((per_minute - level) * 60000 / per_minute) + 1000)
  if wait > 0 then return {i, tostring(wait)} end
end
return {0, '0'}
"""

# KEYS: breakers; ARGV cooldown_s, probe_lease_s, mode: view | allow (claims KEYS[1]'s half-open
# probe). Returns {state, retry_after_s, failures} per key, flat. A probe older than the lease
# counts as gone (its replica died).
BREAKER_VIEW = NOW + """
local cooldown, lease, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = now()
local out = {}
for i, key in ipairs(KEYS) do
  local saved = redis.call('HMGET', key, 'opened', 'probe', 'failures')
  local opened, probe = tonumber(saved[1]), tonumber(saved[2])
  if probe and t - probe >= lease then probe = nil end
  local state = 'closed'
  if opened then
    if probe or t - opened < cooldown then state = 'open' else state = 'half_open' end
  end
  if mode == 'allow' and i == 1 and state == 'half_open' then
    redis.call('HSET', key, 'probe', tostring(t))
  end
  local retry = 0
  if opened then retry = math.max(1, math.ceil(opened + cooldown - t)) end
  table.insert(out, state)
  table.insert(out, retry)
  table.insert(out, tonumber(saved[3]) or 0)
end
return out
"""

# KEYS[1] breaker; ARGV failures to open, seconds to keep the record. Returns {opened_now, failures}.
BREAKER_FAILURE = NOW + """
local t = now()
local saved = redis.call('HMGET', KEYS[1], 'failures', 'opened', 'probe')
local failures = (tonumber(saved[1]) or 0) + 1
local opened, probe = tonumber(saved[2]), saved[3]
local opened_now = 0
if probe or (opened == nil and failures >= tonumber(ARGV[1])) then
  if opened == nil then opened_now = 1 end
  redis.call('HSET', KEYS[1], 'opened', tostring(t))
end
redis.call('HSET', KEYS[1], 'failures', failures)
redis.call('HDEL', KEYS[1], 'probe')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {opened_now, failures}
"""

# KEYS[1] breaker. Returns 1 when the breaker was open (the probe closed it).
BREAKER_SUCCESS = """
local was_open = redis.call('HEXISTS', KEYS[1], 'opened')
redis.call('DEL', KEYS[1])
return was_open
"""

# KEYS[1] counter; ARGV amount, ttl in ms ('' for none). Returns the new total as a string.
COUNTER_ADD = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return total
"""
