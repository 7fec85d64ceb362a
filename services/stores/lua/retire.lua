-- Deletes one recording's state for retention, if it may still go: final and not on hold.
-- Leaves a tombstone (expiring) that answers 410 with the reason, drops the recording from
-- every index, takes its bytes off its camera's usage and counts the deletion by rule.
-- A recording of a lane event counts down the event's live recordings; the event's hash
-- expires with the tombstones once none is left.
-- Returns the bytes it weighed, or false (then nothing changed but stale index entries).
local recording_key, gone_key, all_key, camera_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local retention_key, camera_retention_key, usage_key = KEYS[5], KEYS[6], KEYS[7]
local deletions_key, open_key, transaction_key = KEYS[8], KEYS[9], KEYS[10]
local recording_id, camera_id, rule, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now_iso, tombstone_ttl, event_prefix = ARGV[5], ARGV[6], ARGV[7]
local status = redis.call('HGET', recording_key, 'status')
if not status then
  -- Already deleted: only index entries were left behind.
  redis.call('ZREM', retention_key, recording_id)
  redis.call('ZREM', camera_retention_key, recording_id)
  return false
end
if not FINAL[status] or redis.call('HEXISTS', recording_key, 'hold') == 1 then return false end
local bytes = tonumber(redis.call('HGET', recording_key, 'bytes') or '0')
local event_id = redis.call('HGET', recording_key, 'event_id')
redis.call('HSET', gone_key, 'recording_id', recording_id, 'camera_id', camera_id,
           'rule', rule, 'reason', reason, 'deleted_at', now_iso)
redis.call('EXPIRE', gone_key, tombstone_ttl)
redis.call('DEL', recording_key)
for _, key in ipairs({all_key, camera_key, retention_key, camera_retention_key, open_key,
                      transaction_key}) do
  redis.call('ZREM', key, recording_id)
end
if bytes > 0 then redis.call('HINCRBY', usage_key, camera_id, -bytes) end
if event_id then
  local event_key = event_prefix .. event_id
  if redis.call('HINCRBY', event_key, 'live', -1) <= 0 then
    redis.call('EXPIRE', event_key, tombstone_ttl)
  end
end
redis.call('HINCRBY', deletions_key, camera_id .. '|' .. rule, 1)
return bytes
