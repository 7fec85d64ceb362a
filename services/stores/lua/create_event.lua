-- A lane event: claims the idempotency key (if any) for the whole event, writes the event's
-- hash, then creates each camera's recording and queues its job as create.lua does for one,
-- all in one step: a retried lane event finds the event it made, never half of one. Returns
-- the event ID that owns the event, or false when the queue cannot take every job (then
-- nothing is written). KEYS after the first six come four per recording; ARGV after the
-- event's fields, per recording: its ID, its job message, its field count, its fields.
local idempotency_key, event_key, queue_key, open_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local all_key, jobs_key = KEYS[5], KEYS[6]
local claim, event_id, ttl, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_queued, deadline_ms, on_hold = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local count, event_fields = tonumber(ARGV[8]), tonumber(ARGV[9])
if claim == '1' then
  local existing = redis.call('GET', idempotency_key)
  if existing then return existing end
end
if max_queued > 0 and redis.call('LLEN', queue_key) + count > max_queued then return false end
if claim == '1' then redis.call('SET', idempotency_key, event_id, 'EX', ttl) end
local at = 10
redis.call('HSET', event_key, unpack(ARGV, at, at + event_fields - 1))
at = at + event_fields
for recording = 1, count do
  local k = 6 + 4 * (recording - 1)
  local recording_key, camera_key, held_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local transaction_key = KEYS[k + 4]
  local recording_id, job_message, fields = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  redis.call('HSET', recording_key, unpack(ARGV, at + 3, at + 2 + fields))
  at = at + 3 + fields
  if on_hold == '1' then redis.call('SADD', held_key, recording_id) end
  redis.call('ZADD', all_key, score, recording_id)
  redis.call('ZADD', camera_key, score, recording_id)
  if transaction_key ~= '' then redis.call('ZADD', transaction_key, score, recording_id) end
  redis.call('ZADD', open_key, deadline_ms, recording_id)
  redis.call('HSET', jobs_key, recording_id, job_message)
  redis.call('LPUSH', queue_key, job_message)
end
return event_id
