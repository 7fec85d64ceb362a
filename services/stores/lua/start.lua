-- A worker starts a job: counts the delivery, and either marks the recording running (its
-- deadline pushed out to cover this run) or, when its worker died on it too many times,
-- failed. A final recording is left alone: the job has nothing left to do. Deliveries beyond
-- the retries the job asked for are runs lost with their worker.
local recording_key, open_key = KEYS[1], KEYS[2]
local recording_id, max_deliveries, retries = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local deadline_ms, deadline_iso, now_iso = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local failed_reason, camera_id = ARGV[7], ARGV[8]
local status = redis.call('HGET', recording_key, 'status')
if not status then return {'unknown', 0} end
if FINAL[status] then return {status, 0} end
local deliveries = redis.call('HINCRBY', recording_key, 'deliveries', 1)
if deliveries - retries > max_deliveries then
  redis.call('HSET', recording_key, 'status', 'failed', 'reason', failed_reason,
             'updated_at', now_iso)
  redis.call('ZREM', open_key, recording_id)
  on_final(recording_key, recording_id, camera_id, 3)
  return {'failed', deliveries}
end
redis.call('HSET', recording_key, 'status', 'running', 'updated_at', now_iso)
local current = redis.call('ZSCORE', open_key, recording_id)
if not current or tonumber(current) < deadline_ms then
  redis.call('ZADD', open_key, deadline_ms, recording_id)
  redis.call('HSET', recording_key, 'deadline', deadline_iso)
end
return {'running', deliveries}
