"""The Lua scripts that make each queue operation atomic.

Job hash keys are built inside the scripts from the queue's job prefix; they
share the queue's hash tag, so the scripts stay in one Redis Cluster slot.
"""

ENQUEUE = """
-- KEYS: stream, delayed, job hash, stats
-- ARGV: job id, envelope, max size, due ms, now ms, job ttl s, stream field
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {0, redis.call('HGET', KEYS[3], 'state') or 'unknown'}
end
local max = tonumber(ARGV[3])
local state
if tonumber(ARGV[4]) > tonumber(ARGV[5]) then
  if redis.call('ZCARD', KEYS[2]) >= max then return {-1, 'delayed'} end
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  state = 'delayed'
else
  -- acknowledged entries are deleted, so XLEN is ready + in flight
  if redis.call('XLEN', KEYS[1]) >= max then return {-1, 'ready'} end
  redis.call('XADD', KEYS[1], '*', ARGV[7], ARGV[2])
  state = 'queued'
end
redis.call('HSET', KEYS[3], 'state', state, 'envelope', ARGV[2], 'attempts', 0, 'enqueued_at', ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'enqueued', 1)
return {1, state}
"""

MOVE_DUE = """
-- KEYS: delayed, stream ; ARGV: now ms, limit, job prefix, stream field
-- Due jobs re-enter past the size cap: they were accepted once and are never refused later.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local envelope = redis.call('HGET', key, 'envelope')
  if envelope then
    redis.call('XADD', KEYS[2], '*', ARGV[4], envelope)
    redis.call('HSET', key, 'state', 'queued')
  end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""

ACK_DONE = """
-- KEYS: stream, stats
-- ARGV: group, job prefix, result ttl s, finished at, then quadruples (entry id, job id, attempt, result)
local entries = {}
for i = 5, #ARGV, 4 do
  entries[#entries + 1] = ARGV[i]
  local key = ARGV[2] .. ARGV[i + 1]
  redis.call('HSET', key, 'state', 'done', 'attempts', ARGV[i + 2], 'result', ARGV[i + 3], 'finished_at', ARGV[4])
  redis.call('EXPIRE', key, ARGV[3])
end
if #entries > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(entries))
  redis.call('XDEL', KEYS[1], unpack(entries))
  redis.call('HINCRBY', KEYS[2], 'processed', #entries)
end
return #entries
"""

CLAIM_CONSUMER = """
-- KEYS: stream ; ARGV: group, consumer whose entries are taken, claimer, max count
-- Claims another consumer's pending entries by its name, whatever their idle time.
-- Atomic, so two peers that saw the same death never both get an entry.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[4]), ARGV[2])
if #pending == 0 then return {} end
local ids = {}
for i, entry in ipairs(pending) do ids[i] = entry[1] end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
"""
