-- karlton store protocol: shared helpers (prepended to every script).
-- An entry key holds one string, the record: "k1|st|x|s|h|v|g|lg|l|lu|" then the entry bytes.
-- st: e = an entry, m = an entry marked stale, - = no entry (only a lease or a version floor);
-- x expire_at, s soft_at, h hard_at (ms, server clock), v version floor, g the generation stamps
-- the entry was filled under, lg the stamps the lease was granted under, l lease token, lu lease
-- until; an empty field is none. One string (not a hash) so that a script reads the entry and
-- its counters with one MGET and writes it, expiry included, with one SET.
-- Server time from one TIME: ms (a number) and µs (a decimal string, exact: built from TIME's
-- two strings). One call per script: each TIME is a command the server counts and runs.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. string.format('%06d', tonumber(t[2]))
end
local function now_ms()
  return (clock())
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
-- Generation counters are stored as "<value>:<epoch>:<until>": the value is what the protocol
-- reports; the epoch (server µs at creation or bump) makes every incarnation unique, so a counter
-- lost to eviction and created again can never revive entries stamped with an old incarnation;
-- until is the expiry (ms) the writer set with the same SET, so a fill knows without asking
-- whether the counter already outlives its entry. Entries are stamped with "<value>:<epoch>".
-- "<value>:<epoch>" (older writers) and a plain decimal (by hand, INCR) are their own stamps and
-- have no known expiry. Missing or unreadable = absent: reported as '0', and no entry matches it.
-- Returns the value, the stamp (nil if absent) and until (nil if not known).
local function parse_counter(raw)
  if type(raw) ~= 'string' then return '0', nil, nil end
  local st, v, u = string.match(raw, '^((%d+):%d+):(%d+)$')
  if st and #v <= 16 and #u <= 16 then return counter(v), st, tonumber(u) end
  v = string.match(raw, '^(%d+):%d+$')
  if v and #v <= 16 then return counter(v), raw, nil end
  if digits(raw) then return counter(raw), raw, nil end
  return '0', nil, nil
end
-- Write counter key `k` as the incarnation `stamp` living until `at` (ms).
local function set_counter(k, stamp, at)
  redis.call('SET', k, stamp .. ':' .. int(at), 'PXAT', int(at))
end
-- Current generations from MGET's answers for KEYS[first..]: values (reported), their csv,
-- the stamp csv, and whether all exist.
local function gens(vals, first)
  local out, stamps, all = {}, {}, true
  for i = first, #KEYS do
    local v, st = parse_counter(vals[i])
    out[#out + 1] = v
    if st then stamps[#stamps + 1] = st else all = false; stamps[#stamps + 1] = '' end
  end
  return out, table.concat(out, ','), table.concat(stamps, ','), all
end
-- The slot in `raw` (what GET/MGET answered for the entry key), or nil and why: 'absent',
-- 'dead' (past expire_at with no live lease) or 'garbage' (another type, or not a record).
local function load(raw, now)
  if raw == false or raw == nil then return nil, 'absent' end
  if type(raw) ~= 'string' then return nil, 'garbage' end
  local st, x, s, h, v, g, lg, l, lu, at = string.match(raw,
    '^k1|([em%-])|(%d+)|(%d*)|(%d*)|(%d*)|([%d,:]*)|([%d,:]*)|(%d*)|(%d*)|()')
  if not st or not digits(x) then return nil, 'garbage' end
  local r = { x = tonumber(x), g = g, lg = lg, m = (st == 'm') }
  if st ~= '-' then
    if not (digits(s) and digits(h)) then return nil, 'garbage' end
    r.ss, r.hs, r.e = s, h, string.sub(raw, at)
  end
  if v ~= '' then
    if not decimal(v) then return nil, 'garbage' end
    r.v = v
  end
  if l ~= '' then
    if not (digits(l) and digits(lu)) then return nil, 'garbage' end
    r.l, r.lu = l, tonumber(lu)
  end
  if now >= r.x and not (r.l and r.lu > now) then return nil, 'dead' end
  return r
end
local function live_lease(s, now)
  return s.l ~= nil and s.lu > now
end
-- Write slot r under k, kept until max(x, lu); a slot past both is deleted instead. With
-- `probe`, a value of another type under k is replaced too (SET … GET refuses to overwrite one):
-- answers true when that happened.
local function save(k, r, now, probe)
  local at = r.x
  if r.l and r.lu > at then at = r.lu end
  if at <= now then redis.call('DEL', k); return false end
  local st = '-'
  if r.e then st = r.m and 'm' or 'e' end
  local rec = table.concat({ 'k1', st, int(r.x), r.ss or '', r.hs or '', r.v or '', r.g or '',
    r.l and r.lg or '', r.l or '', r.l and int(r.lu) or '', r.e or '' }, '|')
  if probe then
    local old = redis.pcall('SET', k, rec, 'PXAT', int(at), 'GET')
    if type(old) == 'table' and old['err'] then
      redis.call('DEL', k)
      redis.call('SET', k, rec, 'PXAT', int(at))
      return true
    end
    return false
  end
  redis.call('SET', k, rec, 'PXAT', int(at))
  return false
end
