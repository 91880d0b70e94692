"""The Lua scripts that make each queue operation atomic.

Job hash keys are built inside the scripts from the queue's job prefix; they
share the queue's hash tag, so the scripts stay in one Redis Cluster slot.
"""

ENQUEUE = """
-- KEYS: stream, delayed, stats
-- ARGV: max size, now ms, stream field, job prefix, least job ttl s, then one argument a job:
--   "<job id> <due ms> <envelope>" (a job id has no space; one argument, not three, halves what a batch costs
--   to pack and parse)
-- Each job in order, as if alone (a repeated id finds the job its first copy added);
-- one pair a job: {1, state} added, {0, state} existed (nothing added), {-1, 'ready'|'delayed'} queue full.
local max, now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
-- Counted on first need, then kept here: the script alone writes while it runs.
-- Acknowledged entries are deleted, so XLEN is ready + in flight.
local ready, delayed
local replies, added = {}, 0
for i = 6, #ARGV do
  local job = ARGV[i]
  local id_end = string.find(job, ' ', 1, true)
  local due_end = string.find(job, ' ', id_end + 1, true)
  local id, due_ms, envelope = string.sub(job, 1, id_end - 1), string.sub(job, id_end + 1, due_end - 1),
    string.sub(job, due_end + 1)
  local due = tonumber(due_ms)
  local key = ARGV[4] .. id
  local code, state = 1, nil
  if redis.call('EXISTS', key) == 1 then
    code, state = 0, redis.call('HGET', key, 'state') or 'unknown'
  elseif due > now then
    delayed = delayed or redis.call('ZCARD', KEYS[2])
    if delayed >= max then
      code, state = -1, 'delayed'
    else
      redis.call('ZADD', KEYS[2], due_ms, id)
      delayed, state = delayed + 1, 'delayed'
    end
  else
    ready = ready or redis.call('XLEN', KEYS[1])
    if ready >= max then
      code, state = -1, 'ready'
    else
      redis.call('XADD', KEYS[1], '*', ARGV[3], envelope)
      ready, state = ready + 1, 'queued'
    end
  end
  if code == 1 then
    redis.call('HSET', key, 'state', state, 'envelope', envelope, 'attempts', 0, 'enqueued_at', ARGV[2])
    redis.call('EXPIRE', key, ttl + math.max(0, math.floor((due - now) / 1000)))
    added = added + 1
  end
  replies[#replies + 1] = code
  replies[#replies + 1] = state
end
if added > 0 then redis.call('HINCRBY', KEYS[3], 'enqueued', added) end
return replies
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
-- ARGV: group, job prefix, result ttl s, finished at, consumer, queued job ttl s, count of starts S,
--   then S pairs (job id, started at): jobs still running, their hash marked so;
--   then quadruples (entry id, job id, attempt, result): jobs done, acknowledged and deleted
local first_done = 8 + 2 * tonumber(ARGV[7])
for i = 8, first_done - 1, 2 do
  local key = ARGV[2] .. ARGV[i]
  redis.call('HSET', key, 'state', 'running', 'consumer', ARGV[5], 'started_at', ARGV[i + 1])
  redis.call('EXPIRE', key, ARGV[6])
end
local entries = {}
for i = first_done, #ARGV, 4 do
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

LEASE_HOLD = """
-- KEYS: lease ; ARGV: token, lease ms
-- Renews the lease when this token holds it, takes it when nobody does: 1 held, 0 someone else holds it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

LEASE_RELEASE = """
-- KEYS: lease ; ARGV: token. Deletes the lease only when this token holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

ADVANCE_TICK = """
-- KEYS: last ticks hash ; ARGV: schedule name, tick s
-- Records the tick unless a later one is recorded (two schedulers never move it back): 1 moved, 0 not.
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if last and last >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

UNIQUE_CLAIM = """
-- KEYS: unique lock, the job's owner key ; ARGV: job id, ttl ms
-- Takes the lock for the job about to be enqueued, unless a job holds it: nil taken, else the holder's id.
-- The owner key (job id -> lock name) is how the job finds its lock to release it when it finishes.
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], KEYS[1], 'PX', ARGV[2])
return false
"""

UNIQUE_RELEASE = """
-- KEYS: the job's owner key ; ARGV: job id
-- Frees the job's unique lock if it still holds it (after its TTL another job may); 1 when it had one.
-- The lock's name is read from the owner key: it shares the queue's hash tag, so it is in the same slot.
local lock = redis.call('GET', KEYS[1])
if not lock then return 0 end
if redis.call('GET', lock) == ARGV[1] then redis.call('DEL', lock) end
redis.call('DEL', KEYS[1])
return 1
"""
