-- bump: KEYS = generation counter key; ARGV = value, value+1 (used if value equals the current
-- one), ttl_ms (the counter lives this long after the bump)
-- reply: the new value (bulk string)
-- A bumped counter outlives every load that may have read it before the bump (a lease lasts at
-- most ttl_ms, extensions included: the flow sends none that would keep a lease longer than an
-- hour from its grant): until then it reads as the new value, never as absent (0), so a fill checked
-- against the old value is refused. Any longer TTL it had served only entries stamped with the
-- old value, which the bump orphans; fills under the new value extend it again (fill.lua).
local k = KEYS[1]
local old = parse_counter(redis.pcall('GET', k))
local v = ARGV[1]
if v == old then v = ARGV[2] end
local now, us = clock()
set_counter(k, v .. ':' .. us, now + tonumber(ARGV[3]))
return v
