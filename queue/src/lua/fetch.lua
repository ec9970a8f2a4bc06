-- Herald queue: lease the next batch of jobs to one worker.
--
-- KEYS[1] workers zset        KEYS[2] active list     KEYS[3] this worker's inflight set
-- KEYS[4] data hash           KEYS[5] scheduled zset  KEYS[6] paused flag
-- KEYS[7] wake list (see enqueue.lua)
-- ARGV[1] now (seconds, may be fractional)
-- ARGV[2] batch size          ARGV[3] worker name
-- ARGV[4] promote limit       ARGV[5] meta key prefix ("<queue>:meta")
-- ARGV[6] fetch lookup prefix, "" for none: a job with an idempotency key K
--         gets "lookup_key" = K and, if K is claimed under that prefix
--         (claims.lua), "lookup_value" = the claim's value added to its
--         returned metadata (what the value means is the caller's
--         business).
--
-- Every list handled here is bounded by an argument (promote limit, batch
-- size), and values reach variadic commands through unpack() in slices of
-- at most 1,000: Lua cannot unpack much more than 8,000 values at once.
-- Returns {ids, payloads, metas, next_due} where metas[i] is job i's
-- metadata hash as a flat field/value array and next_due the earliest due
-- time in the scheduled set (seconds; "" when it is empty), so an idle
-- worker knows when to look again. A leased job is recorded only by its
-- membership of the worker's inflight set.
--
-- The wake list: a fetch that leaves ready jobs behind makes sure it holds
-- a token, so one more idle worker wakes and helps; a fetch that empties
-- the ready list (or finds the queue paused) clears it, since every job it
-- announced is taken. Tokens therefore never pile up.

local workers, active, inflight = KEYS[1], KEYS[2], KEYS[3]
local data, scheduled, paused, wake = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = ARGV[1]
local batch = tonumber(ARGV[2])
local worker = ARGV[3]
local promote_limit = tonumber(ARGV[4])
local meta_prefix = ARGV[5]
local lookup_prefix = ARGV[6] or ""
local SLICE = 1000

-- Job metadata (flat field/value array) with what the lookup found: the
-- claim of its idempotency key (claims.lua, which this script is prefixed
-- with), looked up in the grids read once per call.
local lookup_grids = nil
local function with_lookup(meta)
    if lookup_prefix == "" then
        return meta
    end
    for f = 1, #meta, 2 do
        if meta[f] == "idempotency_key" then
            if meta[f + 1] ~= "" then
                if lookup_grids == nil then
                    lookup_grids = claim_grids(lookup_prefix, tonumber(now))
                end
                local found = claim_find(lookup_prefix, lookup_grids, tonumber(now), meta[f + 1])
                meta[#meta + 1] = "lookup_key"
                meta[#meta + 1] = meta[f + 1]
                if found then
                    meta[#meta + 1] = "lookup_value"
                    meta[#meta + 1] = found
                end
            end
            break
        end
    end
    return meta
end

local function in_slices(command, key, values)
    for first = 1, #values, SLICE do
        local last = math.min(first + SLICE - 1, #values)
        redis.call(command, key, unpack(values, first, last))
    end
end

if not redis.call("zscore", workers, worker) then
    return redis.error_reply("HERALD_UNREGISTERED worker " .. worker .. " is not registered")
end

-- A paused queue leases nothing: its jobs wait where they are, no attempt
-- spent, until an operator resumes it.
-- The earliest due time left in the scheduled set, "" for none.
local function next_due()
    local first = redis.call("zrange", scheduled, 0, 0, "WITHSCORES")
    return first[2] or ""
end

if redis.call("exists", paused) == 1 then
    redis.call("del", wake)
    return {{}, {}, {}, next_due()}
end

-- 1. Move at most promote_limit due jobs from the scheduled set to the queue.
local due = redis.call("zrangebyscore", scheduled, "-inf", now, "LIMIT", 0, promote_limit)
if #due > 0 then
    in_slices("zrem", scheduled, due)
    in_slices("rpush", active, due)
end

-- 2. Lease at most `batch` jobs from the head of the queue.
local popped = redis.call("lpop", active, batch)
if not popped then
    redis.call("del", wake)
    return {{}, {}, {}, next_due()}
end
if redis.call("llen", active) > 0 then
    if redis.call("llen", wake) == 0 then
        redis.call("lpush", wake, "1")
    end
else
    redis.call("del", wake)
end

local ids, payloads, metas = {}, {}, {}
for first = 1, #popped, SLICE do
    local last = math.min(first + SLICE - 1, #popped)
    local slice_payloads = redis.call("hmget", data, unpack(popped, first, last))
    for i = first, last do
        local payload = slice_payloads[i - first + 1]
        -- An id without data was discarded by an operator: drop it.
        if payload then
            ids[#ids + 1] = popped[i]
            payloads[#payloads + 1] = payload
            metas[#metas + 1] = with_lookup(redis.call("hgetall", meta_prefix .. ":" .. popped[i]))
        end
    end
end
if #ids > 0 then
    in_slices("sadd", inflight, ids)
end

return {ids, payloads, metas, next_due()}
