-- Settles one overdue recording as failed, unless it became final or its deadline moved.
-- Returns the status it had, or false.
local recording_key, open_key = KEYS[1], KEYS[2]
local recording_id, now_ms, now_iso = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local running_reason, queued_reason, camera_id = ARGV[4], ARGV[5], ARGV[6]
local deadline = redis.call('ZSCORE', open_key, recording_id)
if not deadline or tonumber(deadline) > now_ms then return false end
redis.call('ZREM', open_key, recording_id)
local status = redis.call('HGET', recording_key, 'status')
if not status or FINAL[status] then return false end
local reason = running_reason
if status == 'queued' then reason = queued_reason end
redis.call('HSET', recording_key, 'status', 'failed', 'reason', reason, 'updated_at', now_iso)
on_final(recording_key, recording_id, camera_id, 3)
return status
