-- Moves final recordings from the outbox into the due set, one delivery per webhook
-- (`<recording_id>:<webhook id>`), due now; in one step, so none is lost between the two.
-- Returns how many recordings it moved.
local outbox_key, due_key = KEYS[1], KEYS[2]
local now_ms, batch = ARGV[1], ARGV[2]
local ids = redis.call('LPOP', outbox_key, batch)
if not ids then return 0 end
for _, recording_id in ipairs(ids) do
  for hook = 3, #ARGV do
    redis.call('ZADD', due_key, 'NX', now_ms, recording_id .. ':' .. ARGV[hook])
  end
end
return #ids
