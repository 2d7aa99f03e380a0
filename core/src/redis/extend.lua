-- extend: KEYS = entry key; ARGV = token, lease_ttl_ms. reply: 1 if the token held a live lease (now extended), else 0
local k = KEYS[1]
local now = now_ms()
local s = load(redis.pcall('GET', k), now)
if not s or not live_lease(s, now) or s.l ~= ARGV[1] then return 0 end
s.lu = now + tonumber(ARGV[2])
save(k, s, now)
return 1
