-- Herald queue: send dead jobs back to the queue (an operator's retry).
-- Begins with dead_index.lua.
--
-- KEYS[1] dead zset   KEYS[2] active list
-- KEYS[3] the set to take from in "all" mode: the dead zset itself, or one
--         of its indexes (a label value or an error group)
-- KEYS[4] wake list (an idle worker is woken for the jobs, see enqueue.lua)
-- ARGV[1] meta key prefix   ARGV[2] now
-- ARGV[3] "all" to retry up to ARGV[4] of the jobs in KEYS[3] that failed
--         at or before ARGV[5] (seconds), oldest first; or "ids" with the
--         ids from ARGV[4]
-- The bound in "all" is the moment the operator asked: a retried job that
-- fails again meanwhile is dead with a later time and is not taken again,
-- so a retry-all walks the dead set once. A retried job gets a fresh
-- attempt budget; its run history is kept. Returns the ids retried.

local dead, active, source, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local meta_prefix, now = ARGV[1], ARGV[2]

local ids = dead_take(dead, source)

for _, id in ipairs(ids) do
    local meta_key = meta_prefix .. ":" .. id
    dead_unindex(dead, meta_key, id)
    redis.call("hset", meta_key, "status", "Pending", "attempts", 0, "retried_at", now)
    redis.call("rpush", active, id)
end
if #ids > 0 and redis.call("llen", wake) == 0 then
    redis.call("lpush", wake, "1")
end
return ids
