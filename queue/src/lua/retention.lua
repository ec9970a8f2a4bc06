-- Herald queue: forget finished jobs past their retention, a bounded slice
-- per call, by one worker at a time. Begins with dead_index.lua.
--
-- KEYS[1] retention lock   KEYS[2] done zset   KEYS[3] dead zset   KEYS[4] data hash
-- ARGV[1] calling worker   ARGV[2] lock time (ms; the heartbeat interval)
-- ARGV[3] done before (seconds): done jobs finished earlier are removed
-- ARGV[4] dead before (seconds): dead jobs that failed earlier are trimmed
-- ARGV[5] dead cap: beyond this many dead jobs the oldest are trimmed
-- ARGV[6] most jobs removed per kind by this call
-- ARGV[7] meta key prefix   ARGV[8] history key prefix
-- ARGV[9] counter key prefix ("<queue>:stats")
--
-- The lock makes one worker of the queue do the work for one heartbeat
-- interval: a call from another worker while it is held returns at once
-- with {-1, 0, 0, 0}. A removed job loses its payload, metadata, history
-- and set membership; trimmed dead jobs are counted under
-- "<stats>:trimmed:age" and "<stats>:trimmed:cap", which live forever.
-- Returns {done removed, dead trimmed by age, dead trimmed by cap, more},
-- more = 1 if a limit stopped this call.

local lock, done, dead, data = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local worker, lock_ms = ARGV[1], tonumber(ARGV[2])
local done_before, dead_before = ARGV[3], ARGV[4]
local dead_cap, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local meta_prefix, history_prefix, stats_prefix = ARGV[7], ARGV[8], ARGV[9]

if not redis.call("set", lock, worker, "NX", "PX", lock_ms) then
    if redis.call("get", lock) ~= worker then
        return {-1, 0, 0, 0}
    end
end

-- Removes `ids` (at most `limit`, so one unpack each) from `set` and
-- deletes everything else the queue keeps for them.
local function forget(set, ids)
    if #ids == 0 then
        return 0
    end
    redis.call("zrem", set, unpack(ids))
    redis.call("hdel", data, unpack(ids))
    local keys = {}
    for _, id in ipairs(ids) do
        if set == dead then
            dead_unindex(dead, meta_prefix .. ":" .. id, id)
        end
        keys[#keys + 1] = meta_prefix .. ":" .. id
        keys[#keys + 1] = history_prefix .. ":" .. id
    end
    redis.call("unlink", unpack(keys))
    return #ids
end

local more = 0
local removed = forget(done, redis.call("zrangebyscore", done, "-inf", "(" .. done_before, "LIMIT", 0, limit))
if removed == limit then
    more = 1
end

local by_age = forget(dead, redis.call("zrangebyscore", dead, "-inf", "(" .. dead_before, "LIMIT", 0, limit))
if by_age == limit then
    more = 1
end

local by_cap = 0
local excess = redis.call("zcard", dead) - dead_cap
if excess > 0 then
    if excess > limit then
        excess = limit
        more = 1
    end
    by_cap = forget(dead, redis.call("zrange", dead, 0, excess - 1))
end

if by_age > 0 then
    redis.call("incrby", stats_prefix .. ":trimmed:age", by_age)
end
if by_cap > 0 then
    redis.call("incrby", stats_prefix .. ":trimmed:cap", by_cap)
end
return {removed, by_age, by_cap, more}
