-- Herald queue: send dead jobs back to the queue (an operator's retry).
--
-- KEYS[1] dead zset   KEYS[2] active list
-- ARGV[1] meta key prefix   ARGV[2] now
-- ARGV[3] "all" to retry up to ARGV[4] of the dead jobs that failed at or
--         before ARGV[5] (seconds), oldest first; or "ids" with the ids
--         from ARGV[4]
-- The bound in "all" is the moment the operator asked: a retried job that
-- fails again meanwhile is dead with a later time and is not taken again,
-- so a retry-all walks the dead set once. A retried job gets a fresh
-- attempt budget; its run history is kept. Returns the ids retried.

local dead, active = KEYS[1], KEYS[2]
local meta_prefix, now, mode = ARGV[1], ARGV[2], ARGV[3]

local ids
if mode == "all" then
    ids = redis.call("zrangebyscore", dead, "-inf", ARGV[5], "LIMIT", 0, tonumber(ARGV[4]))
    if #ids > 0 then
        redis.call("zrem", dead, unpack(ids))
    end
else
    ids = {}
    for i = 4, #ARGV do
        if redis.call("zrem", dead, ARGV[i]) == 1 then
            ids[#ids + 1] = ARGV[i]
        end
    end
end

for _, id in ipairs(ids) do
    redis.call("hset", meta_prefix .. ":" .. id, "status", "Pending", "attempts", 0, "retried_at", now)
    redis.call("rpush", active, id)
end
return ids
