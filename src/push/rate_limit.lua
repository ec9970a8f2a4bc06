-- Herald's shared rate limit: GCRA (the generic cell rate algorithm) as
-- virtual scheduling, on Redis's clock, so every worker process sharing
-- the Redis draws from the same schedule.
--
-- KEYS[1] the limiter's hash: field "tat" (the theoretical arrival time of
--         the next request, µs since the epoch) and field "deferred" (the
--         time until which turns have been promised to deferred jobs)
-- ARGV[1] interval: µs between two requests at the limited rate
-- ARGV[2] cost: requests to take (a job sent in several slices takes several)
-- ARGV[3] tolerance: µs a turn may lie ahead of now and still be taken
--
-- Returns {1, wait}: the turn is taken, the caller sends in `wait` µs.
-- Returns {0, wait}: nothing taken; the caller defers its job by `wait` µs,
--   a turn behind those of the jobs deferred before it, so a backlog of
--   deferred jobs comes back spread at the limited rate, not all at once.
-- The hash expires once both times are past.

local key = KEYS[1]
local interval, cost, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call("time")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local stored = redis.call("hmget", key, "tat", "deferred")
local tat = math.max(tonumber(stored[1]) or 0, now)
local deferred = tonumber(stored[2]) or 0
local wait = tat - now

local admitted = 0
if wait <= tolerance then
    admitted = 1
    tat = tat + interval * cost
    redis.call("hset", key, "tat", string.format("%.0f", tat))
else
    local start = math.max(deferred, tat)
    deferred = start + interval * cost
    wait = start - now
    redis.call("hset", key, "deferred", string.format("%.0f", deferred))
end
local last = math.max(tat, deferred)
redis.call("pexpire", key, math.ceil((last - now) / 1000) + 1000)
return {admitted, wait}
