-- Pins a window at receipt. The moment is read from this server's clock (TIME) inside the
-- script, unless the cashier's trusted event_time is given: then no frame can arrive between
-- the moment and the pin. Finds the N newest frames at or before the moment in the index
-- (never in the stream itself, whose replies would copy megabytes) and registers a pin
-- scored by the oldest one's capture time; its member carries the recording, the moment,
-- the frames wanted after it and the deadline, so the trim knows the span it holds. With no
-- frame yet, the pin holds from the moment on. `now_us` replaces TIME (tests' fake clock).
-- Numbers stay strings where they are concatenated: Lua prints a large number with too few
-- digits.
local index_key, pins_key = KEYS[1], KEYS[2]
local moment, frames_before, recording_id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local frames_after, lifetime_ms, now = ARGV[4], tonumber(ARGV[5]), ARGV[6]
if now == '' then
  local time = redis.call('TIME')
  now = time[1] .. string.format('%06d', tonumber(time[2]))
end
if moment == '' then moment = now end
local deadline = string.format('%.0f', math.floor(tonumber(now) / 1000) + lifetime_ms)
local member = recording_id .. '|' .. moment .. '|' .. frames_after .. '|' .. deadline
local found = redis.call('ZREVRANGEBYSCORE', index_key, moment, '-inf',
                         'WITHSCORES', 'LIMIT', 0, frames_before)
local count = #found / 2
local buffered = redis.call('ZCARD', index_key)
local first, score = false, moment
if count > 0 then first, score = found[2 * count - 1], found[2 * count] end
redis.call('ZADD', pins_key, score, member)
return {first, count, buffered, now, member, deadline}
