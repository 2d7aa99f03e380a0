-- karlton store protocol: shared helpers (prepended to every script).
-- Entry hash fields: e entry bytes, s soft_at, h hard_at, x expire_at, v version floor,
-- g generations csv, m marked stale, l lease token, lu lease until, lg the generation stamps the
-- lease was granted under. All times: ms, server clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function digits(v)
  return type(v) == 'string' and #v > 0 and #v <= 16 and string.match(v, '^%d+$') ~= nil
end
-- Canonical decimal of any u64 (versions may exceed 2^53), and its exact order.
local function decimal(v)
  return type(v) == 'string' and #v > 0 and #v <= 20 and string.match(v, '^%d+$') ~= nil
end
local function dec_lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
-- Integer to decimal string (redis.call would format a Lua number as a float).
local function int(n)
  return string.format('%d', n)
end
-- A counter value as canonical decimal ('0' when missing or unreadable).
local function counter(v)
  if not digits(v) then return '0' end
  v = string.gsub(v, '^0+', '')
  if v == '' then return '0' end
  return v
end
-- Server time in microseconds as a decimal string (exact: built from TIME's two strings).
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
-- Generation counters are stored as "<value>:<epoch>": the value is what the protocol reports;
-- the epoch (server µs at creation or bump) makes every incarnation unique, so a counter lost
-- to eviction and created again can never revive entries stamped with an old incarnation.
-- Entries are stamped with the full "<value>:<epoch>" forms. A plain decimal (written by hand or
-- by INCR) is accepted as its own stamp. Missing or unreadable = absent: reported as '0', and
-- no entry matches it.
local function parse_counter(raw)
  if type(raw) ~= 'string' then return '0', nil end
  local v, e = string.match(raw, '^(%d+):(%d+)$')
  if v and #v <= 16 then return counter(v), raw end
  if digits(raw) then return counter(raw), raw end
  return '0', nil
end
-- Current generations: values (reported), their csv, the stamp csv, and whether all exist.
local function gens(first)
  local out, stamps, all = {}, {}, true
  for i = first, #KEYS do
    local v, st = parse_counter(redis.pcall('GET', KEYS[i]))
    out[#out + 1] = v
    if st then stamps[#stamps + 1] = st else all = false; stamps[#stamps + 1] = '' end
  end
  return out, table.concat(out, ','), table.concat(stamps, ','), all
end
-- The slot under k, or nil if absent, dead (past expire_at with no live lease) or garbage
-- (wrong type, missing/invalid fields); dead and garbage keys are deleted.
local function load(k, now)
  local r = redis.pcall('HMGET', k, 'e', 's', 'h', 'x', 'v', 'g', 'm', 'l', 'lu', 'lg')
  if r['err'] then redis.call('DEL', k); return nil end
  if not r[4] then
    if redis.call('EXISTS', k) == 1 then redis.call('DEL', k) end
    return nil
  end
  local s = { e = r[1] or nil, g = r[6] or nil, m = (r[7] == '1'), l = r[8] or nil, lg = r[10] or '' }
  local ok = digits(r[4])
  if ok and s.e then
    ok = digits(r[2]) and digits(r[3]) and s.g ~= nil and string.match(s.g, '^[%d,:]*$') ~= nil
    if ok then s.s = tonumber(r[2]); s.h = tonumber(r[3]) end
  end
  if ok and r[5] then ok = decimal(r[5]); s.v = r[5] end
  if ok and s.l then ok = digits(s.l) and digits(r[9]); if ok then s.lu = tonumber(r[9]) end end
  if not ok then redis.call('DEL', k); return nil end
  s.x = tonumber(r[4])
  if now >= s.x and not (s.l and s.lu > now) then redis.call('DEL', k); return nil end
  return s
end
local function live_lease(s, now)
  return s.l ~= nil and s.lu > now
end
local function expire(k, s_x, lu)
  local at = s_x
  if lu and lu > at then at = lu end
  redis.call('PEXPIREAT', k, int(math.floor(at)))
end
