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
s.l, s.lu = nil, nil
if ARGV[1] == '0' or not existed then
  -- Delete: only a version floor stays behind (until x), so an older fill is still refused.
  s.e, s.m, s.ss, s.hs, s.g = nil, false, nil, nil, nil
  if not s.v then redis.call('DEL', k); return existed and 1 or 0 end
else
  s.m = true
end
save(k, s, now)
return existed and 1 or 0
