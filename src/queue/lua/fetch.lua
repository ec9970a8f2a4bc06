-- Herald queue: lease the next batch of jobs to one worker.
--
-- KEYS[1] workers zset        KEYS[2] active list     KEYS[3] this worker's inflight set
-- KEYS[4] data hash           KEYS[5] scheduled zset
-- ARGV[1] now (seconds, may be fractional)
-- ARGV[2] batch size          ARGV[3] worker name
-- ARGV[4] promote limit       ARGV[5] meta key prefix ("<queue>:meta")
--
-- Every loop below is bounded by an argument (promote limit, batch size), so
-- the script's work and its stack use stay small however long the queue is.
-- Nothing is passed through unpack(): Lua caps unpack near 8,000 values.
-- Returns {ids, payloads, metas, promoted} where metas[i] is a flat
-- field/value array of job i's metadata hash.

local workers, active, inflight = KEYS[1], KEYS[2], KEYS[3]
local data, scheduled = KEYS[4], KEYS[5]
local now = ARGV[1]
local batch = tonumber(ARGV[2])
local worker = ARGV[3]
local promote_limit = tonumber(ARGV[4])
local meta_prefix = ARGV[5]

if not redis.call("zscore", workers, worker) then
    return redis.error_reply("HERALD_UNREGISTERED worker " .. worker .. " is not registered")
end

-- 1. Move at most promote_limit due jobs from the scheduled set to the queue.
local due = redis.call("zrangebyscore", scheduled, "-inf", now, "LIMIT", 0, promote_limit)
for _, id in ipairs(due) do
    redis.call("zrem", scheduled, id)
    redis.call("rpush", active, id)
end

-- 2. Lease at most `batch` jobs from the head of the queue.
local ids = {}
local payloads = {}
local metas = {}
for _ = 1, batch do
    local id = redis.call("lpop", active)
    if not id then
        break
    end
    local payload = redis.call("hget", data, id)
    if payload then
        redis.call("sadd", inflight, id)
        local meta_key = meta_prefix .. ":" .. id
        redis.call("hset", meta_key, "status", "Running", "locked_by", worker, "locked_at", now)
        ids[#ids + 1] = id
        payloads[#payloads + 1] = payload
        metas[#metas + 1] = redis.call("hgetall", meta_key)
    end
    -- An id without data was discarded by an operator: drop it silently.
end

return {ids, payloads, metas, #due}
