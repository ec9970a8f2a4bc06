-- Herald queue: forget dead jobs for good (an operator's discard). Begins
-- with dead_index.lua.
--
-- KEYS[1] dead zset   KEYS[2] data hash
-- KEYS[3] the set to take from in "all" mode: the dead zset itself, or one
--         of its indexes (a label value or an error group)
-- ARGV[1] meta key prefix   ARGV[2] history key prefix
-- ARGV[3] "all" to discard up to ARGV[4] of the jobs in KEYS[3] that
--         failed at or before ARGV[5] (seconds), oldest first; or "ids"
--         with the ids from ARGV[4]
-- Only jobs in the dead set are touched. Returns how many were discarded.

local dead, data, source = KEYS[1], KEYS[2], KEYS[3]
local meta_prefix, history_prefix = ARGV[1], ARGV[2]

local discarded = 0
for _, id in ipairs(dead_take(dead, source)) do
    local meta_key = meta_prefix .. ":" .. id
    dead_unindex(dead, meta_key, id)
    redis.call("hdel", data, id)
    redis.call("del", meta_key, history_prefix .. ":" .. id)
    discarded = discarded + 1
end
return discarded
