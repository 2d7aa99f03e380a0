-- invalidate: KEYS = entry key; ARGV = mode (0 delete, 1 mark stale)
-- reply: 1 if an entry was there, else 0
local k = KEYS[1]
local now = now_ms()
local s = load(k, now)
if not s then return 0 end
local existed = s.e ~= nil
redis.call('HDEL', k, 'l', 'lu')
if ARGV[1] == '0' then
  redis.call('HDEL', k, 'e', 'm', 's', 'h', 'g')
  if not s.v then redis.call('DEL', k); return existed and 1 or 0 end
elseif existed then
  redis.call('HSET', k, 'm', '1')
else
  redis.call('HDEL', k, 'm')
  if not s.v then redis.call('DEL', k); return 0 end
end
expire(k, s.x, nil)
return existed and 1 or 0
