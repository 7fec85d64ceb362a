-- Claims the deliveries due now: each is pushed to `lease_until_ms`, so the next look does
-- not send it again while it is on its way; one that is never reported comes due again then.
local due_key = KEYS[1]
local now_ms, lease_until_ms, limit = ARGV[1], ARGV[2], ARGV[3]
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now_ms, 'LIMIT', 0, limit)
for _, delivery in ipairs(due) do redis.call('ZADD', due_key, 'XX', lease_until_ms, delivery) end
return due
