-- bump: KEYS = generation counter key; ARGV = value, value+1 (used if value equals the current one)
-- reply: the new value (bulk string)
local k = KEYS[1]
local old = parse_counter(redis.pcall('GET', k))
local v = ARGV[1]
if v == old then v = ARGV[2] end
redis.call('SET', k, v .. ':' .. now_us())
return v
