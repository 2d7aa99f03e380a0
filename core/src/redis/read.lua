-- read: KEYS = entry key, gen keys...; ARGV = lease mode (0 none, 1 if needed, 2 force), lease_ttl_ms, token
-- reply: {now, entry|nil, marked 0/1, {generations...}, lease kind (0 not requested, 1 granted, 2 held), held until}
local k = KEYS[1]
local mode, ttl, token = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local cur, _, stampcsv, all = gens(2)
local s = load(k, now)
local entry, marked, needs, held = false, 0, true, nil
if s then
  local valid = s.e ~= nil and all and s.g == stampcsv
  if valid then entry = s.e end
  needs = (not valid) or s.m or now >= s.s
  if valid and s.m then marked = 1 end
  -- A lease granted under other generations predates a bump: its load can never fill, so it
  -- does not hold the key against readers of the new generation.
  if live_lease(s, now) and s.lg == stampcsv then held = s.lu end
end
local want = (mode == '2') or (mode == '1' and needs)
if not want then
  return { now, entry, marked, cur, 0, 0 }
end
if held then
  return { now, entry, marked, cur, 2, held }
end
local untl = now + ttl
if s then
  redis.call('HSET', k, 'l', token, 'lu', int(untl), 'lg', stampcsv)
  expire(k, s.x, untl)
else
  redis.call('HSET', k, 'x', '0', 'l', token, 'lu', int(untl), 'lg', stampcsv)
  expire(k, 0, untl)
end
return { now, entry, marked, cur, 1, 0 }
