-- release: KEYS = entry key; ARGV = token. reply: 1 if the token held a live lease (now released), else 0
local k = KEYS[1]
local now = now_ms()
local s = load(redis.pcall('GET', k), now)
if not s or not live_lease(s, now) or s.l ~= ARGV[1] then return 0 end
-- Ended, not forgotten: the token stays as the floor the next grant's token must exceed.
s.lu = now
save(k, s, now)
return 1
