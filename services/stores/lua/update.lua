-- Moves a recording to a new status unless it is already final: a redelivered job must not
-- turn a complete recording back into a running one. A final status leaves the open set.
-- The fields to set follow the named arguments.
local recording_key, open_key = KEYS[1], KEYS[2]
local recording_id, final, camera_id = ARGV[1], ARGV[2], ARGV[3]
local status = redis.call('HGET', recording_key, 'status')
if not status or FINAL[status] then return 0 end
redis.call('HSET', recording_key, unpack(ARGV, 4))
if final == '1' then
  redis.call('ZREM', open_key, recording_id)
  on_final(recording_key, recording_id, camera_id, 3)
end
return 1
