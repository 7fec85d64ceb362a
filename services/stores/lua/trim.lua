-- Trims after each append: keeps the `keep` newest frames and every live pin's span (its
-- first frame to its moment, plus its frames after), drops expired pins, and deletes the
-- frames in the gaps between spans, at most `budget` per append so that freeing a backlog's
-- frames never stalls Redis. Over the hard cap the oldest frames go, pinned or not. Only the
-- first `max_pins` pins are examined; frames beyond them are kept until a later append.
local stream_key, index_key, pins_key = KEYS[1], KEYS[2], KEYS[3]
local keep, cap, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, max_pins = tonumber(ARGV[4]), tonumber(ARGV[5])
local total = redis.call('ZCARD', index_key)
if total <= keep then return 0 end
local removed = 0
local function drop(ids)
  if #ids == 0 then return end
  redis.call('XDEL', stream_key, unpack(ids))
  redis.call('ZREM', index_key, unpack(ids))
  removed = removed + #ids
end
local function gap(low, high)
  if removed < budget then
    drop(redis.call('ZRANGEBYSCORE', index_key, low, high, 'LIMIT', 0, budget - removed))
  end
end
if total > cap then
  drop(redis.call('ZRANGE', index_key, 0, math.min(total - cap, budget) - 1))
end
local nth = redis.call('ZREVRANGE', index_key, keep - 1, keep - 1, 'WITHSCORES')
local floor_text = nth[2]
local low, low_text = nil, '-inf'
local pins = redis.call('ZRANGEBYSCORE', pins_key, '-inf', '(' .. floor_text,
                        'WITHSCORES', 'LIMIT', 0, max_pins + 1)
local all_seen = #pins <= 2 * max_pins
for i = 1, math.min(#pins, 2 * max_pins), 2 do
  local member, first = pins[i], pins[i + 1]
  local moment, after, deadline = string.match(member, '|(%d+)|(%d+)|(%d+)$')
  if deadline == nil or tonumber(deadline) < now then
    redis.call('ZREM', pins_key, member)
  elseif low_text ~= '+inf' then
    gap(low_text, '(' .. first)
    local hold_text = moment
    if tonumber(after) > 0 then
      local last = redis.call('ZRANGEBYSCORE', index_key, '(' .. moment, '+inf',
                              'WITHSCORES', 'LIMIT', tonumber(after) - 1, 1)
      hold_text = last[2] or '+inf'
    end
    if hold_text == '+inf' then
      low_text = '+inf'
    elseif low == nil or tonumber(hold_text) > low then
      low, low_text = tonumber(hold_text), '(' .. hold_text
    end
  end
end
if all_seen and low_text ~= '+inf' then gap(low_text, '(' .. floor_text) end
return removed
