-- Moves a pin's first frame forward past the frames its job has written (KEYS: the camera's
-- pins and the recording's owner token), so the trim frees them while the job still runs.
-- Only the attempt holding the owner token may: an attempt superseded by a takeover must not
-- release frames the attempt that adopted its work still needs. A pin only moves forward.
-- Returns 0 if another attempt owns the pin, else 1 (moved, or nothing left to move: the pin
-- expired or was released, or the token expired with it).
local pins_key, owner_key = KEYS[1], KEYS[2]
local member, token, first = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('GET', owner_key)
if owner and owner ~= token then return 0 end
if not owner then return 1 end
local current = redis.call('ZSCORE', pins_key, member)
if current and tonumber(current) < tonumber(first) then
  -- ZREM first: past maxmemory Redis refuses ZADD as a script's first write, but not once
  -- the script has written; and a release is what frees memory.
  redis.call('ZREM', pins_key, member)
  redis.call('ZADD', pins_key, first, member)
end
return 1
