-- A job taken back from a dead worker is queued again, first in line: its recording says so
-- and its deadline covers one more run.
local recording_key, open_key = KEYS[1], KEYS[2]
local recording_id, reason, deadline_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local deadline_iso, now_iso = ARGV[4], ARGV[5]
local status = redis.call('HGET', recording_key, 'status')
if not status or FINAL[status] then return 0 end
redis.call('HSET', recording_key, 'status', 'queued', 'reason', reason, 'updated_at', now_iso)
local current = redis.call('ZSCORE', open_key, recording_id)
if not current or tonumber(current) < deadline_ms then
  redis.call('ZADD', open_key, deadline_ms, recording_id)
  redis.call('HSET', recording_key, 'deadline', deadline_iso)
end
return 1
