-- Herald queue: enqueue jobs (the caller sends bounded chunks).
--
-- KEYS[1] data hash   KEYS[2] ready list   KEYS[3] scheduled zset
-- KEYS[4] wake list (at most one token: see below)
-- ARGV[1] now   ARGV[2] meta key prefix   ARGV[3] idempotency key prefix
-- ARGV[4] idempotency TTL in seconds (0 = keep forever)
-- ARGV[5..] per job: id, payload, run_at, idempotency key ("" for none),
--           n, then n field/value pairs of metadata.
-- A job whose idempotency key was already claimed is skipped: it exists.
-- Claims are fields of time-bucketed hashes (claims.lua, which this script
-- is prefixed with); ARGV[3] is their "<queue>:idempotency" prefix.
-- Due jobs go straight to the ready list; future ones to the scheduled set.
--
-- The wake list is what idle workers block on (BLPOP). When jobs became
-- ready, or were scheduled, and it holds no token, one is pushed: exactly
-- one waiting worker wakes, and the fetch that worker makes pushes the next
-- token if it left jobs behind (fetch.lua), so workers join one at a time,
-- never as a herd. A fetch that finds only scheduled jobs learns when the
-- earliest is due and sets its timer for it, so a job scheduled a moment
-- ahead is not left waiting for the idle worker's next look.
-- Returns {enqueued, scheduled, duplicates}.

local data, active, scheduled, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local meta_prefix, idem_prefix = ARGV[2], ARGV[3]
local ttl = tonumber(ARGV[4])
local enqueued, delayed, duplicates = 0, 0, 0
local grids = nil
local expiring = {}
-- Ids that are due, in order: pushed onto the ready list together at the
-- end (one command per 1,000 rather than one per job).
local ready = {}

local i = 5
while i <= #ARGV do
    local id, payload, run_at, idem = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
    local n = tonumber(ARGV[i + 4])
    local fields_at = i + 5
    i = fields_at + 2 * n

    local claimed = true
    if idem ~= "" then
        if grids == nil then
            -- Strings an earlier release wrote live `ttl` (0: for good);
            -- its processes may still write while this one starts.
            claim_register(idem_prefix, now, ttl, ttl > 0 and 2 * ttl or CLAIM_FOR_GOOD)
            grids = claim_grids(idem_prefix, now)
        end
        if claim_find(idem_prefix, grids, now, idem) then
            claimed = false
        else
            local bucket, field = claim_target(idem_prefix, now, ttl, idem)
            redis.call("hset", bucket, field, id)
            expiring[bucket] = claim_expiry(now, ttl)
        end
    end

    if claimed and redis.call("hsetnx", data, id, payload) == 1 then
        if n > 0 then
            redis.call("hset", meta_prefix .. ":" .. id, unpack(ARGV, fields_at, fields_at + 2 * n - 1))
        end
        if run_at > now then
            redis.call("zadd", scheduled, run_at, id)
            -- Its latency counts from when it falls due, not from now
            -- (complete.lua).
            redis.call("hset", meta_prefix .. ":" .. id, "due_at", run_at)
            delayed = delayed + 1
        else
            ready[#ready + 1] = id
        end
    else
        duplicates = duplicates + 1
    end
end

claim_expire(expiring)

enqueued = #ready
for first = 1, #ready, 1000 do
    redis.call("rpush", active, unpack(ready, first, math.min(first + 999, #ready)))
end

if enqueued + delayed > 0 and redis.call("llen", wake) == 0 then
    redis.call("lpush", wake, "1")
end

return {enqueued, delayed, duplicates}
