-- Herald queue: turn the done and dead sets of an earlier layout (plain
-- sets) into sorted sets by finish time, a bounded slice per call.
--
-- KEYS[1] the set to convert (done or dead)   KEYS[2] its lifetime counter
-- ARGV[1] meta key prefix   ARGV[2] now (seconds)   ARGV[3] most ids per call
-- ARGV[4] "1" to start the counter from the set's size (done), "0" not to
--
-- Each id is scored by its metadata's done_at (now if it has none) and
-- collected in "<set>:upgrading", which replaces the set once it is empty.
-- The counter, if asked and absent, starts at the set's size, so the
-- dashboard's lifetime count carries on. Returns 1 while more remain.

local set, counter = KEYS[1], KEYS[2]
local meta_prefix, now, limit, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local upgrading = set .. ":upgrading"

if redis.call("type", set).ok ~= "set" then
    return 0
end
if count == "1" and redis.call("exists", counter) == 0 then
    redis.call("set", counter, redis.call("scard", set))
end
local ids = redis.call("spop", set, limit)
for _, id in ipairs(ids) do
    local at = redis.call("hget", meta_prefix .. ":" .. id, "done_at")
    redis.call("zadd", upgrading, at or now, id)
end
if redis.call("exists", set) == 1 then
    return 1
end
if redis.call("exists", upgrading) == 1 then
    redis.call("rename", upgrading, set)
end
return 0
