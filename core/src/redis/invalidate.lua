-- invalidate: KEYS = entry key; ARGV = mode (0 delete, 1 mark stale)
-- reply: 1 if an entry was there, else 0
local k = KEYS[1]
local now = now_ms()
local s, why = load(redis.pcall('GET', k), now)
if not s then
  if why ~= 'absent' then redis.call('DEL', k) end
  return 0
end
local existed = s.e ~= nil
-- Revoke the lease but keep its token as the floor for the next one (read.lua). With nothing
-- else left to keep, a revoked lease's record stays (as `-`) until the lease would have ended,
-- so no new token can equal the revoked one even within one µs or across a clock step back.
local revoked = live_lease(s, now) and s.lu
if s.l then s.lu = now end
if ARGV[1] == '0' or not existed then
  -- Delete: only a version floor stays behind (until x), so an older fill is still refused.
  s.e, s.m, s.ss, s.hs, s.g = nil, false, nil, nil, nil
  if not s.v then
    if not revoked then redis.call('DEL', k); return existed and 1 or 0 end
    s.x = revoked
  end
else
  s.m = true
end
save(k, s, now)
return existed and 1 or 0
