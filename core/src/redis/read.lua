-- read: KEYS = entry key, gen keys...; ARGV = lease mode (0 none, 1 if needed, 2 force), lease_ttl_ms
-- reply: {now, entry|nil, marked 0/1, {generations...}, lease kind (0 not requested, 1 granted,
-- 2 held), the granted token | held until | 0}
-- Garbage under the entry key answers an empty entry: the flow counts an entry that does not
-- decode as corrupt and treats it as a miss, and the next write replaces it.
local k = KEYS[1]
local mode, ttl = ARGV[1], tonumber(ARGV[2])
local now, us = clock()
local vals = redis.call('MGET', unpack(KEYS))
local cur, _, stampcsv, all = gens(vals, 2)
local s, why = load(vals[1], now)
local entry, marked, needs, held = false, 0, true, nil
if s then
  -- Past x the entry is gone (the record lives on only for its lease): its counters may be too.
  local valid = s.e ~= nil and now < s.x and all and s.g == stampcsv
  if valid then entry = s.e end
  needs = (not valid) or s.m or now >= tonumber(s.ss)
  if valid and s.m then marked = 1 end
  -- A lease granted under other generations predates a bump: its load can never fill, so it
  -- does not hold the key against readers of the new generation.
  if live_lease(s, now) and s.lg == stampcsv then held = s.lu end
elseif why == 'garbage' then
  entry = ''
end
local want = (mode == '2') or (mode == '1' and needs)
if not want then
  -- MGET answers nil for a value of another type: only EXISTS tells it from a miss.
  if why == 'absent' and redis.call('EXISTS', k) == 1 then why = 'garbage'; entry = '' end
  if why ~= 'absent' and not s then redis.call('DEL', k) end
  return { now, entry, marked, cur, 0, 0 }
end
if held then
  return { now, entry, marked, cur, 2, held }
end
-- The token is issued here, never by a client: the server clock in µs (the reading `now` came
-- from), and above the last token this record held (kept after a lease ends, see
-- release/invalidate/fill), so on one key tokens only go up and no two holders ever share one,
-- whatever the clients' random state.
local r = s or { x = 0 }
local token = tonumber(us)
if r.l and tonumber(r.l) >= token then token = tonumber(r.l) + 1 end
r.l, r.lu, r.lg = int(token), now + ttl, stampcsv
if save(k, r, now, why == 'absent') then entry = '' end
return { now, entry, marked, cur, 1, token }
