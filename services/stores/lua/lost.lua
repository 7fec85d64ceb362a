-- The lost-job check. kombu's Redis transport takes a message off the queue with BRPOP, then
-- writes it to the unacked hash: a connection that drops between the two loses the message,
-- and its recording would wait for its deadline (celery/kombu#1733). A recording not final
-- yet keeps a copy of its job's message (create.lua), and some copy of it should be in the
-- queue or in unacked. This puts back, first in line, the messages ARGV gives (rebuilt by
-- the caller) whose recording is still open and has no copy anywhere, and forgets those of
-- recordings that are final or gone. Returns {IDs put back, IDs with no copy anywhere}.
local queue_key, unacked_key, jobs_key = KEYS[1], KEYS[2], KEYS[3]
local recording_prefix = ARGV[1]
if redis.call('HLEN', jobs_key) == 0 then return {{}, {}} end
local present = {}
local function note(message)  -- a record job's task ID is its recording's ID
  local id = string.match(message, '"id": ?"([^"]+)"')
  if id then present[id] = true end
end
for _, message in ipairs(redis.call('LRANGE', queue_key, 0, -1)) do note(message) end
for _, entry in ipairs(redis.call('HVALS', unacked_key)) do note(entry) end
local restored = {}
for at = 2, #ARGV, 2 do
  local recording_id, message = ARGV[at], ARGV[at + 1]
  local status = redis.call('HGET', recording_prefix .. recording_id, 'status')
  if not status or FINAL[status] then
    redis.call('HDEL', jobs_key, recording_id)
  elseif not present[recording_id] then
    -- RPUSH: workers take from the right, so this job is the next one taken.
    redis.call('RPUSH', queue_key, message)
    present[recording_id] = true
    restored[#restored + 1] = recording_id
  end
end
local missing = {}
for _, recording_id in ipairs(redis.call('HKEYS', jobs_key)) do
  if not present[recording_id] then missing[#missing + 1] = recording_id end
end
return {restored, missing}
