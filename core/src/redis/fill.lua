-- fill: KEYS = entry key, gen keys...; ARGV = entry, soft_at, hard_at, expire_at, version|'',
-- has_generations 0/1, generations csv, token|''
-- reply: 0 stored, 1 lease lost, 2 version newer, 3 generation changed
local k = KEYS[1]
local vals = redis.call('MGET', unpack(KEYS))
local _, curcsv, stampcsv, all = gens(vals, 2)
if ARGV[6] == '1' and ARGV[7] ~= curcsv then return 3 end
local now = now_ms()
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
if not all then
  -- First use (or lost to eviction): create each absent counter as a new incarnation.
  local us = now_us()
  local stamps = {}
  for i = 2, #KEYS do
    local _, st = parse_counter(vals[i])
    if not st then st = '0:' .. us; redis.call('SET', KEYS[i], st) end
    stamps[#stamps + 1] = st
  end
  stampcsv = table.concat(stamps, ',')
end
-- SET replaces whatever was under k (garbage of any type included).
save(k, { x = x, ss = ARGV[2], hs = ARGV[3], v = v, g = stampcsv, e = ARGV[1] }, now)
return 0
