-- Herald queue: enqueue claims and delivery receipts of idempotency keys,
-- grouped in time buckets. A prelude: every script that reads or writes
-- claims starts with this file (see `herald_jobs::claims`).
--
-- A claim of key K is one field of one hash, never a key of its own:
--
--   "<prefix>:<W>:<n>:<s>"  field F, value: the claiming job's id, or a
--                           delivery receipt "d@<unix seconds>"
--
-- where <prefix> is "{NAMESPACE:QUEUE}:idempotency", W the grid: how long
-- the claim must be remembered (the TTL its writer was given, seconds),
-- n = floor(t / W) for the claim's time t, and, from D = sha1hex(K), s the
-- sub-bucket (D's first two hex digits modulo SUB_BUCKETS) and F = D's
-- digits 3 to 24 (88 bits). Every bucket of grid W expires whole at
-- (n + 2) * W, so a claim lives between W and 2W. A key claimed at t is in
-- bucket n or n - 1 of its grid until t + W: two probes find it.
--
-- Why: one string key per claim costs Redis about 260 bytes (key, value,
-- expiry entry, buckets); a field of a hashtable-encoded hash about 80, and
-- a small (listpack) hash less. Sub-buckets keep each hash small enough
-- that expiring one never stalls the server.
--
-- "<prefix>:grids" (sorted set) names the grids that may hold live claims,
-- scored by the last time one was written, so a reader probes every grid
-- a claim may be in, even after the TTL changed (a new retry setting):
--   "<W>"      claims of grid W, alive while score + 2W > now
--   "forever"  claims kept for good (a TTL of 0): "<prefix>:forever:<s>"
--   "strings"  one-key-per-claim strings "<prefix>:<K>" of an earlier
--              release may still exist until the score (a time)
--   "layout"   this layout was in use here (score: when it began)

local SUB_BUCKETS = 64
-- "For good", as a span of seconds (a century).
local CLAIM_FOR_GOOD = 3155760000

-- The sub-bucket and field of key.
local function claim_place(key)
    local digest = redis.sha1hex(key)
    return tonumber(string.sub(digest, 1, 2), 16) % SUB_BUCKETS, string.sub(digest, 3, 24)
end

local function claim_bucket(prefix, grid, n, sub)
    return prefix .. ":" .. grid .. ":" .. n .. ":" .. sub
end

-- Whether the queue whose claims are under `prefix` ever held a job: its
-- job hash, finished or dead jobs or its counters exist (the total of
-- done jobs is kept for good). Claim strings were written by enqueues, so
-- a queue that never held one has none, even where workers registered
-- first (a new deployment): its claims are then never probed as strings.
local function claim_queue_ran(prefix)
    local queue = string.sub(prefix, 1, #prefix - #":idempotency")
    return redis.call("exists", queue .. ":data", queue .. ":done", queue .. ":dead",
        queue .. ":stats:total:done") > 0
end

-- The grids that may hold live claims at `now` (drops the others), and
-- whether earlier strings may still exist: {widths, forever, strings}.
local function claim_grids(prefix, now)
    local grids = prefix .. ":grids"
    local members = redis.call("zrange", grids, 0, -1, "WITHSCORES")
    local found = { widths = {}, forever = false, strings = false }
    local layout = false
    for i = 1, #members, 2 do
        local member, score = members[i], tonumber(members[i + 1])
        if member == "layout" then
            layout = true
        elseif member == "forever" then
            found.forever = true
        elseif member == "strings" then
            if score > now then
                found.strings = true
            else
                redis.call("zrem", grids, member)
            end
        else
            local width = tonumber(member)
            if width and score + 2 * width > now then
                found.widths[#found.widths + 1] = width
            else
                redis.call("zrem", grids, member)
            end
        end
    end
    -- Read before this layout's first write: strings may exist if the
    -- queue ran before.
    if not layout and claim_queue_ran(prefix) then
        found.strings = true
    end
    return found
end

-- Registers a write to grid `ttl` (0: forever) at `now`. The first write
-- of this layout under `prefix`, on a queue that ran before, marks strings
-- of the earlier release as possible for `strings_for` seconds.
local function claim_register(prefix, now, ttl, strings_for)
    local grids = prefix .. ":grids"
    if redis.call("zscore", grids, "layout") == false then
        if claim_queue_ran(prefix) then
            redis.call("zadd", grids, now + strings_for, "strings")
        end
        redis.call("zadd", grids, now, "layout")
    end
    if ttl > 0 then
        redis.call("zadd", grids, now, tostring(ttl))
    else
        redis.call("zadd", grids, now, "forever")
    end
end

-- Where key's claim is: its value, the bucket (or, for an earlier string,
-- the key) holding it and its field ("" for a string); false if unclaimed.
-- A key has one claim at most: an enqueue probes every grid before it
-- claims, and a receipt overwrites the claim where it is.
local function claim_find(prefix, grids, now, key)
    local sub, field = claim_place(key)
    for _, width in ipairs(grids.widths) do
        local n = math.floor(now / width)
        for b = n, n - 1, -1 do
            local bucket = claim_bucket(prefix, width, b, sub)
            local found = redis.call("hget", bucket, field)
            if found then
                return found, bucket, field
            end
        end
    end
    if grids.forever then
        local bucket = prefix .. ":forever:" .. sub
        local found = redis.call("hget", bucket, field)
        if found then
            return found, bucket, field
        end
    end
    if grids.strings then
        local found = redis.call("get", prefix .. ":" .. key)
        if found then
            return found, prefix .. ":" .. key, ""
        end
    end
    return false
end

-- Overwrites the claim found at bucket/field (claim_find) with value.
local function claim_overwrite(bucket, field, value)
    if field == "" then
        redis.call("set", bucket, value, "KEEPTTL")
    else
        redis.call("hset", bucket, field, value)
    end
end

-- Where a new claim of key goes: its bucket's name and field.
local function claim_target(prefix, now, ttl, key)
    local sub, field = claim_place(key)
    if ttl > 0 then
        return claim_bucket(prefix, ttl, math.floor(now / ttl), sub), field
    end
    return prefix .. ":forever:" .. sub, field
end

-- Sets every bucket written in this call to expire with its grid (once
-- per bucket: `written` maps bucket name to its expiry time, 0 for none).
local function claim_expire(written)
    for bucket, at in pairs(written) do
        if at > 0 then
            redis.call("expireat", bucket, at)
        end
    end
end

-- When a bucket of grid `ttl` written at `now` expires (0: never).
local function claim_expiry(now, ttl)
    if ttl > 0 then
        return (math.floor(now / ttl) + 2) * ttl
    end
    return 0
end
