-- fill: KEYS = entry key, gen keys...; ARGV = entry, soft_at, hard_at, expire_at, version|'',
-- has_generations 0/1, generations csv, token|''
-- reply: 0 stored, 1 lease lost, 2 version newer, 3 generation changed
-- Counters outlive the entries stamped with them: each is created (if absent) or extended to at
-- least the entry's expiry x (an entry is valid only before x), so once every entry under a
-- counter is gone the counter goes too. An extension goes to 2x - now (twice the entry's
-- lifetime): a counter carries its expiry (prelude, parse_counter), so the fills of the next
-- lifetime find it long enough and write nothing to it. It fails closed even if lost earlier: an absent counter
-- matches no entry, and a new incarnation has a new epoch, matching no old stamp. A fill checked
-- against value 0 cannot pass after a bump in between: a bumped counter lives at least as long
-- as a lease (bump.lua).
local k = KEYS[1]
local vals = redis.call('MGET', unpack(KEYS))
local _, curcsv = gens(vals, 2)
if ARGV[6] == '1' and ARGV[7] ~= curcsv then return 3 end
local now, us = clock()
local s = load(vals[1], now)
local token = ARGV[8]
-- The token must hold a live lease (an expired one may already be someone else's).
if token ~= '' and (s == nil or not live_lease(s, now) or s.l ~= token) then return 1 end
local version = ARGV[5]
local floor = s and s.v
if version ~= '' and floor and dec_lt(version, floor) then return 2 end
local x = tonumber(ARGV[4])
if s and s.v and s.x > x then x = s.x end
local v = version
if v == '' then v = floor
elseif floor and dec_lt(v, floor) then v = floor end
-- Create each absent counter as a new incarnation (first use, or expired or lost) and keep every
-- counter until at least x (nothing to keep if the entry is not stored: x is past). A new
-- incarnation's epoch is this script's clock reading.
local keep = x + (x - now)
local stamps = {}
for i = 2, #KEYS do
  local _, st, til = parse_counter(vals[i])
  if not st then
    st = '0:' .. us
    if x > now then set_counter(KEYS[i], st, keep) end
  elseif x > now then
    if not til then
      -- No known expiry (an older writer's form, or by hand): GT only ever raises a TTL.
      redis.call('PEXPIREAT', KEYS[i], int(x), 'GT')
    elseif til < x then
      set_counter(KEYS[i], st, keep)
    end
  end
  stamps[#stamps + 1] = st
end
local stampcsv = table.concat(stamps, ',')
-- SET replaces whatever was under k (garbage of any type included).
-- The lease (consumed by this fill, or revoked by an authoritative one) ends, but its token stays
-- as the floor for the next grant's (read.lua).
local l = s and s.l
save(k, { x = x, ss = ARGV[2], hs = ARGV[3], v = v, g = stampcsv, e = ARGV[1], l = l, lu = l and now }, now)
return 0
