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
local meta_prefix, history_prefix, mode = ARGV[1], ARGV[2], ARGV[3]

local candidates
local first = 4
if mode == "all" then
    candidates = redis.call("zrangebyscore", source, "-inf", ARGV[5], "LIMIT", 0, tonumber(ARGV[4]))
    first = 1
else
    candidates = ARGV
end
local discarded = 0
for i = first, #candidates do
    local id = candidates[i]
    if redis.call("zrem", dead, id) == 1 then
        local meta_key = meta_prefix .. ":" .. id
        dead_unindex(dead, meta_key, id)
        redis.call("hdel", data, id)
        redis.call("del", meta_key, history_prefix .. ":" .. id)
        discarded = discarded + 1
    elseif source ~= dead then
        -- Not dead: an index entry left behind; drop it so it is not taken again.
        redis.call("zrem", source, id)
    end
end
return discarded
