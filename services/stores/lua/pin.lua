-- Pins windows at receipt: one per camera named (KEYS: each camera's index and pins), all at
-- one moment, so a lane's cameras are recorded at the same instant. The moment is read from
-- this server's clock (TIME) inside the script, unless the cashier's trusted event_time is
-- given: then no frame can arrive between the moment and the pin. For each camera it finds
-- the N newest frames at or before the moment in the index (never in the stream itself,
-- whose replies would copy megabytes) and registers a pin scored by the oldest one's capture
-- time; its member carries the recording, the moment, the frames wanted after it and the
-- deadline, so the trim knows the span it holds. With no frame yet, the pin holds from the
-- moment on. `now_us` replaces TIME (tests' fake clock). Numbers stay strings where they are
-- concatenated: Lua prints a large number with too few digits.
local moment, lifetime_ms, now = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if now == '' then
  local time = redis.call('TIME')
  now = time[1] .. string.format('%06d', tonumber(time[2]))
end
if moment == '' then moment = now end
local deadline = string.format('%.0f', math.floor(tonumber(now) / 1000) + lifetime_ms)
local replies = {}
for camera = 1, #KEYS / 2 do
  local index_key, pins_key = KEYS[2 * camera - 1], KEYS[2 * camera]
  local at = 3 + 3 * (camera - 1)
  local frames_before, recording_id, frames_after = tonumber(ARGV[at + 1]), ARGV[at + 2],
                                                    ARGV[at + 3]
  local member = recording_id .. '|' .. moment .. '|' .. frames_after .. '|' .. deadline
  local found = redis.call('ZREVRANGEBYSCORE', index_key, moment, '-inf',
                           'WITHSCORES', 'LIMIT', 0, frames_before)
  local count = #found / 2
  local buffered = redis.call('ZCARD', index_key)
  local first, score = false, moment
  if count > 0 then first, score = found[2 * count - 1], found[2 * count] end
  redis.call('ZADD', pins_key, score, member)
  replies[camera] = {first, count, buffered, now, member, deadline}
end
return replies
