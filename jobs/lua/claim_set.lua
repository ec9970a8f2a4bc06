-- Herald queue: overwrite claims of idempotency keys (prefixed with
-- claims.lua): a key's claim is given a new value where it is; a key not
-- claimed is claimed with that value in grid ARGV[3].
--
-- KEYS[1] "<prefix>:grids" (names the slot; see claims.lua)
-- ARGV[1] prefix "<queue>:idempotency"   ARGV[2] now (seconds)
-- ARGV[3] TTL of a new claim, seconds (0: for good)
-- ARGV[4..] key, value pairs
-- Returns how many keys were claimed anew.

local prefix, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
claim_register(prefix, now, ttl, ttl > 0 and 2 * ttl or CLAIM_FOR_GOOD)
local grids = claim_grids(prefix, now)
local expiring = {}
local new = 0
for i = 4, #ARGV, 2 do
    local key, value = ARGV[i], ARGV[i + 1]
    local found, where, field = claim_find(prefix, grids, now, key)
    if found then
        claim_overwrite(where, field, value)
    else
        local bucket, place = claim_target(prefix, now, ttl, key)
        redis.call("hset", bucket, place, value)
        expiring[bucket] = claim_expiry(now, ttl)
        new = new + 1
    end
end
claim_expire(expiring)
return new
