-- Herald queue: move one key of the earlier, untagged layout to its name
-- in the hash-tagged layout, a bounded slice per call.
--
-- KEYS[1] the key in the earlier layout   KEYS[2] its name now
-- ARGV[1] most members (list items, hash fields, set or sorted-set
--         members) moved by this call
--
-- When the new name is free the key is renamed whole (its expiry kept).
-- When both exist (a producer of the earlier release wrote while this one
-- ran) the old key is merged in: list items go before the new ones, in
-- their order (they are older); hash fields, set and sorted-set members
-- the new key already has are kept as they are; counters are added up;
-- any other string of the new key wins. Returns 1 while the old key still
-- holds members, 0 when it is gone, -1 when the two keys are of different
-- types (the old one is left for an operator).

local old, new = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])

local kind = redis.call("type", old).ok
if kind == "none" then
    return 0
end
if redis.call("exists", new) == 0 then
    redis.call("rename", old, new)
    return 0
end
if redis.call("type", new).ok ~= kind then
    return -1
end

if kind == "list" then
    -- The old list's tail first, each pushed on the new list's head: the
    -- old items end up ahead of the new ones, in their own order.
    local items = redis.call("rpop", old, limit)
    if items then
        for _, item in ipairs(items) do
            redis.call("lpush", new, item)
        end
    end
elseif kind == "hash" then
    local page = redis.call("hscan", old, 0, "COUNT", limit)[2]
    for i = 1, #page, 2 do
        redis.call("hsetnx", new, page[i], page[i + 1])
        redis.call("hdel", old, page[i])
    end
elseif kind == "set" then
    local members = redis.call("spop", old, limit)
    if #members > 0 then
        redis.call("sadd", new, unpack(members))
    end
elseif kind == "zset" then
    local popped = redis.call("zpopmin", old, limit)
    for i = 1, #popped, 2 do
        redis.call("zadd", new, "NX", popped[i + 1], popped[i])
    end
elseif kind == "string" then
    local added, kept = tonumber(redis.call("get", old)), tonumber(redis.call("get", new))
    if added and kept and math.floor(added) == added and math.floor(kept) == kept then
        redis.call("incrby", new, added)
    end
    redis.call("del", old)
else
    return -1
end
return redis.call("exists", old)
