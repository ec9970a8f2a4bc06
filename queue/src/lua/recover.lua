-- Herald queue: hand the jobs of workers that stopped heart-beating back to
-- the queue, a bounded number per call.
--
-- KEYS[1] workers zset   KEYS[2] active list   KEYS[3] wake list
-- ARGV[1] deadline (a worker whose last heartbeat is older is presumed dead)
-- ARGV[2] inflight key prefix ("<queue>:inflight")
-- ARGV[3] meta key prefix   ARGV[4] limit of jobs moved by this call
-- ARGV[5] name of the calling worker (never recovered from itself)
-- A dead worker is removed from the workers set once its inflight set is
-- empty; until then the next call continues with it.
-- An idle worker is woken for the jobs handed back (see enqueue.lua).
-- Returns {moved, more} where more = 1 if the limit stopped this call.

local workers, active, wake = KEYS[1], KEYS[2], KEYS[3]
local deadline = ARGV[1]
local inflight_prefix, meta_prefix = ARGV[2], ARGV[3]
local limit = tonumber(ARGV[4])
local caller = ARGV[5]
local moved = 0

local function wake_one()
    if moved > 0 and redis.call("llen", wake) == 0 then
        redis.call("lpush", wake, "1")
    end
end

local dead_workers = redis.call("zrangebyscore", workers, "-inf", "(" .. deadline, "LIMIT", 0, 100)
for _, name in ipairs(dead_workers) do
    if name ~= caller then
        local inflight = inflight_prefix .. ":" .. name
        while moved < limit do
            local id = redis.call("spop", inflight)
            if not id then
                break
            end
            redis.call("rpush", active, id)
            local meta_key = meta_prefix .. ":" .. id
            -- "recovered": it may have run in part, so it cannot be recalled
            -- (herald-jobs' recall.lua).
            redis.call("hset", meta_key, "status", "Pending", "recovered", "1")
            redis.call("hdel", meta_key, "locked_by", "locked_at")
            moved = moved + 1
        end
        if moved >= limit then
            wake_one()
            return {moved, 1}
        end
        redis.call("zrem", workers, name)
        redis.call("del", inflight_prefix .. ":" .. name)
    end
end
wake_one()
return {moved, #dead_workers == 100 and 1 or 0}
