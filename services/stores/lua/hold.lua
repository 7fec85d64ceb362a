-- Puts a recording on hold (hold = its JSON) or releases it (hold = '', released = who and
-- why, kept as the last release). A held recording
-- leaves the retention candidates; a released one that is final returns to them. Returns
-- 'held', 'released', or 'gone' / 'unknown' when there is no such recording.
local recording_key, gone_key, held_key = KEYS[1], KEYS[2], KEYS[3]
local retention_key, camera_retention_key = KEYS[4], KEYS[5]
local recording_id, camera_id, hold, released = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', recording_key) == 0 then
  if redis.call('EXISTS', gone_key) == 1 then return 'gone' end
  return 'unknown'
end
if hold ~= '' then
  redis.call('HSET', recording_key, 'hold', hold)
  redis.call('SADD', held_key, recording_id)
  redis.call('ZREM', retention_key, recording_id)
  redis.call('ZREM', camera_retention_key, recording_id)
  return 'held'
end
redis.call('HDEL', recording_key, 'hold')
if released ~= '' then redis.call('HSET', recording_key, 'released', released) end
redis.call('SREM', held_key, recording_id)
local status = redis.call('HGET', recording_key, 'status')
if status and FINAL[status] then
  local score = redis.call('HGET', recording_key, 'received_ms') or '0'
  redis.call('ZADD', retention_key, score, recording_id)
  redis.call('ZADD', camera_retention_key, score, recording_id)
end
return 'released'
