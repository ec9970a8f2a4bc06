-- Herald queue: send dead jobs back to the queue (an operator's retry).
--
-- KEYS[1] dead set   KEYS[2] active list
-- ARGV[1] meta key prefix   ARGV[2] now
-- ARGV[3] "all" to retry up to ARGV[4] dead jobs, or "ids" with the ids from ARGV[4]
-- A retried job gets a fresh attempt budget; its run history is kept.
-- Returns the ids retried.

local dead, active = KEYS[1], KEYS[2]
local meta_prefix, now, mode = ARGV[1], ARGV[2], ARGV[3]

local ids
if mode == "all" then
    ids = redis.call("spop", dead, tonumber(ARGV[4]))
else
    ids = {}
    for i = 4, #ARGV do
        if redis.call("srem", dead, ARGV[i]) == 1 then
            ids[#ids + 1] = ARGV[i]
        end
    end
end

for _, id in ipairs(ids) do
    redis.call("hset", meta_prefix .. ":" .. id, "status", "Pending", "attempts", 0, "retried_at", now)
    redis.call("rpush", active, id)
end
return ids
