-- Herald queue: record the outcome of finished jobs and release their leases.
--
-- KEYS[1] this worker's inflight set   KEYS[2] done zset   KEYS[3] dead zset
-- KEYS[4] scheduled zset   KEYS[5] data hash   KEYS[6] wake list (a job
--         scheduled to run again wakes an idle worker, which learns when
--         it is due from its fetch; see enqueue.lua)
-- ARGV[1] now   ARGV[2] meta key prefix   ARGV[3] history key prefix
-- ARGV[4] history entries kept per job
-- ARGV[5] counter key prefix ("<queue>:stats"): per-minute counters, kept
--         an hour, and "<stats>:total:done", kept for good; and the
--         enqueue-to-finish latency of the jobs done each minute (from
--         the time a scheduled job fell due), as a
--         histogram ("<stats>:latency:<minute>", bucket -> count, kept an
--         hour; see LATENCY_BOUNDS_MS)
-- ARGV[6] the labels dead jobs are indexed by ("name=/pointer;...", see
--         dead_index.lua, which this script begins with)
-- ARGV[7..] groups of 9: id, outcome ("done" | "retry" | "dead"), status,
--           attempts, result (JSON), retry_at (seconds; used when "retry"),
--           history entry (JSON; "" records none), error group (used when
--           "dead"), since (seconds: when the job could first run, as the
--           worker's fetch read it from the metadata; "" to read it here).
-- The caller sends at most a few hundred jobs per call.
--
-- A job no longer in this worker's inflight set lost its lease (the worker
-- was presumed dead and the job handed to another): its outcome is not
-- recorded here, so the other run's outcome stands. Returns {recorded, lost}.

local inflight, done, dead, scheduled, data, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = ARGV[1]
local meta_prefix, history_prefix = ARGV[2], ARGV[3]
local keep = tonumber(ARGV[4])
local stats_prefix = ARGV[5]
local labels = ARGV[6]
local FIRST, WIDTH = 7, 9
local rescheduled = false
-- Upper bounds (ms) of the latency buckets 1..14; bucket 15 is the rest.
-- queue/src/admin/history.rs reads them with the same bounds.
local LATENCY_BOUNDS_MS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local latency = {}
local minute = math.floor(tonumber(now) / 60)

local ids = {}
for i = FIRST, #ARGV, WIDTH do
    ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
    return {0, 0}
end
local held = redis.call("smismember", inflight, unpack(ids))
redis.call("srem", inflight, unpack(ids))

local finished, recorded, lost, failed = {}, 0, 0, 0
for n = 1, #ids do
    local i = FIRST + (n - 1) * WIDTH
    if held[n] == 0 then
        lost = lost + 1
    else
        local id, outcome, status = ARGV[i], ARGV[i + 1], ARGV[i + 2]
        local attempts, result, retry_at, entry = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
        local meta_key = meta_prefix .. ":" .. id
        if entry ~= "" then
            local history_key = history_prefix .. ":" .. id
            redis.call("rpush", history_key, entry)
            redis.call("ltrim", history_key, -keep, -1)
        end
        if outcome == "done" then
            redis.call("hset", meta_key, "status", status, "attempts", attempts, "result", result, "done_at", now)
            finished[#finished + 1] = id
            -- From when it could first run: its enqueue, or the time a
            -- scheduled job fell due (enqueue.lua's due_at), as the fetch
            -- read them; read here only when the worker did not say.
            local enqueued_at = tonumber(ARGV[i + 8])
            if not enqueued_at then
                local since = redis.call("hmget", meta_key, "due_at", "enqueued_at")
                enqueued_at = tonumber(since[1]) or tonumber(since[2])
            end
            if enqueued_at then
                local ms = (tonumber(now) - enqueued_at) * 1000
                local bucket = #LATENCY_BOUNDS_MS + 1
                for b, bound in ipairs(LATENCY_BOUNDS_MS) do
                    if ms <= bound then
                        bucket = b
                        break
                    end
                end
                latency[bucket] = (latency[bucket] or 0) + 1
            end
        elseif outcome == "retry" then
            redis.call("hset", meta_key, "status", status, "attempts", attempts, "result", result, "run_at", retry_at)
            redis.call("zadd", scheduled, retry_at, id)
            rescheduled = true
        else
            redis.call("hset", meta_key, "status", status, "attempts", attempts, "result", result, "done_at", now)
            redis.call("zadd", dead, now, id)
            dead_index(dead, meta_key, id, now, redis.call("hget", data, id), labels, ARGV[i + 7])
            failed = failed + 1
        end
        recorded = recorded + 1
    end
end
if rescheduled and redis.call("llen", wake) == 0 then
    redis.call("lpush", wake, "1")
end
if #finished > 0 then
    local scored = {}
    for _, id in ipairs(finished) do
        scored[#scored + 1] = now
        scored[#scored + 1] = id
    end
    redis.call("zadd", done, unpack(scored))
    redis.call("incrby", stats_prefix .. ":total:done", #finished)
    local counter = stats_prefix .. ":done:" .. minute
    redis.call("incrby", counter, #finished)
    redis.call("expire", counter, 3600)
    local histogram = stats_prefix .. ":latency:" .. minute
    local any = false
    for bucket, count in pairs(latency) do
        redis.call("hincrby", histogram, bucket, count)
        any = true
    end
    if any then
        redis.call("expire", histogram, 3600)
    end
end
if failed > 0 then
    local counter = stats_prefix .. ":failed:" .. minute
    redis.call("incrby", counter, failed)
    redis.call("expire", counter, 3600)
end

return {recorded, lost}
