-- Herald queue: forget dead jobs for good (an operator's discard).
--
-- KEYS[1] dead zset   KEYS[2] data hash
-- ARGV[1] meta key prefix   ARGV[2] history key prefix   ARGV[3..] ids
-- Only jobs in the dead set are touched. Returns how many were discarded.

local dead, data = KEYS[1], KEYS[2]
local meta_prefix, history_prefix = ARGV[1], ARGV[2]
local discarded = 0
for i = 3, #ARGV do
    local id = ARGV[i]
    if redis.call("zrem", dead, id) == 1 then
        redis.call("hdel", data, id)
        redis.call("del", meta_prefix .. ":" .. id, history_prefix .. ":" .. id)
        discarded = discarded + 1
    end
end
return discarded
