-- Herald queue: record the outcome of finished jobs and release their leases.
--
-- KEYS[1] this worker's inflight set   KEYS[2] done set   KEYS[3] dead set
-- KEYS[4] scheduled zset
-- ARGV[1] now   ARGV[2] meta key prefix   ARGV[3] history key prefix
-- ARGV[4] history entries kept per job
-- ARGV[5..] groups of 6: id, outcome ("done" | "retry" | "dead"), status,
--           attempts, result (JSON), retry_at (seconds; used when "retry"),
--           followed by the history entry (JSON) as a 7th value.
--
-- A job no longer in this worker's inflight set lost its lease (the worker
-- was presumed dead and the job handed to another): its outcome is not
-- recorded here, so the other run's outcome stands. Returns {recorded, lost}.

local inflight, done, dead, scheduled = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = ARGV[1]
local meta_prefix, history_prefix = ARGV[2], ARGV[3]
local keep = tonumber(ARGV[4])
local recorded, lost = 0, 0

for i = 5, #ARGV, 7 do
    local id, outcome, status = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local attempts, result, retry_at, entry = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    if redis.call("srem", inflight, id) == 0 then
        lost = lost + 1
    else
        local meta_key = meta_prefix .. ":" .. id
        redis.call("hset", meta_key, "status", status, "attempts", attempts, "result", result, "done_at", now)
        redis.call("hdel", meta_key, "locked_by", "locked_at")
        local history_key = history_prefix .. ":" .. id
        redis.call("rpush", history_key, entry)
        redis.call("ltrim", history_key, -keep, -1)
        if outcome == "done" then
            redis.call("sadd", done, id)
        elseif outcome == "retry" then
            redis.call("hset", meta_key, "run_at", retry_at)
            redis.call("zadd", scheduled, retry_at, id)
        else
            redis.call("sadd", dead, id)
        end
        recorded = recorded + 1
    end
end

return {recorded, lost}
