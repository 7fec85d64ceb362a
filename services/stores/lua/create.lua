-- Claims the idempotency key (if any), creates the recording and queues its job in one step:
-- two copies of one event racing each other still make one recording, and a job is never
-- queued without its recording (nor the reverse); the recording keeps a copy of its job's
-- message until it is final, for the lost-job check (lost.lua). Returns the recording ID that owns the
-- event, or false when the queue is full (then nothing is written). The recording's fields
-- follow the named arguments; a recording held from its event joins its camera's held set,
-- one with a transaction ID (transaction key not '') its transaction's index.
local idempotency_key, recording_key, all_key = KEYS[1], KEYS[2], KEYS[3]
local camera_key, queue_key, open_key, held_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local transaction_key, jobs_key = KEYS[8], KEYS[9]
local claim, recording_id, ttl, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max_queued, job_message, deadline_ms = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local on_hold = ARGV[8]
if claim == '1' then
  local existing = redis.call('GET', idempotency_key)
  if existing then return existing end
end
if max_queued > 0 and redis.call('LLEN', queue_key) >= max_queued then return false end
if claim == '1' then redis.call('SET', idempotency_key, recording_id, 'EX', ttl) end
redis.call('HSET', recording_key, unpack(ARGV, 9))
if on_hold == '1' then redis.call('SADD', held_key, recording_id) end
redis.call('ZADD', all_key, score, recording_id)
redis.call('ZADD', camera_key, score, recording_id)
if transaction_key ~= '' then redis.call('ZADD', transaction_key, score, recording_id) end
redis.call('ZADD', open_key, deadline_ms, recording_id)
if job_message ~= '' then
  redis.call('HSET', jobs_key, recording_id, job_message)
  redis.call('LPUSH', queue_key, job_message)
end
return recording_id
