-- Herald queue: the dead set's indexes. Not a script of its own: the
-- scripts that put jobs into the dead set or take them out begin with it
-- (see queue/src/dead_index.rs).
--
-- Beside the dead zset (id -> failure time), a dead job is listed, with the
-- same score, in
--   <dead>:label:<name>:<value>   one zset per value of each label the queue
--                                 indexes (read from the payload, e.g. the
--                                 event name or the account id)
--   <dead>:error:<sha1 of group>  one zset per error group
-- and <dead>:errors counts the dead jobs of each group (zset: group text ->
-- count). The job's metadata keeps the keys it is listed in ("dead_index")
-- and its group ("error_group"), so taking it out needs no payload.

-- Longest label value indexed; a longer one (not an id or a name) is not.
local DEAD_LABEL_MAX = 200

-- The value at `pointer` ("/a/b/0") in the decoded document, or nil.
local function dead_label_value(doc, pointer)
    local value = doc
    for part in string.gmatch(pointer, "[^/]+") do
        if type(value) ~= "table" then
            return nil
        end
        local n = tonumber(part)
        if n and value[n + 1] ~= nil then
            value = value[n + 1]
        else
            value = value[part]
        end
    end
    if type(value) == "number" then
        value = tostring(value)
    end
    if type(value) == "string" and #value > 0 and #value <= DEAD_LABEL_MAX then
        return value
    end
    return nil
end

-- Lists dead job `id` (failed at `at`) in its indexes. `labels` is
-- "name=/pointer;name=/pointer" ("" for none), `group` its error group
-- ("" for none).
local function dead_index(dead, meta_key, id, at, payload, labels, group)
    local keys = {}
    if payload and labels ~= "" then
        local ok, doc = pcall(cjson.decode, payload)
        if ok and type(doc) == "table" then
            for name, pointer in string.gmatch(labels, "([^=;]+)=([^;]+)") do
                local value = dead_label_value(doc, pointer)
                if value then
                    keys[#keys + 1] = dead .. ":label:" .. name .. ":" .. value
                end
            end
        end
    end
    if group ~= "" then
        keys[#keys + 1] = dead .. ":error:" .. redis.sha1hex(group)
        redis.call("zincrby", dead .. ":errors", 1, group)
    end
    for _, key in ipairs(keys) do
        redis.call("zadd", key, at, id)
    end
    redis.call("hset", meta_key, "dead_index", table.concat(keys, "\n"), "error_group", group)
end

-- Takes dead job `id` out of the indexes its metadata names.
local function dead_unindex(dead, meta_key, id)
    local fields = redis.call("hmget", meta_key, "dead_index", "error_group")
    if fields[1] then
        for key in string.gmatch(fields[1], "[^\n]+") do
            redis.call("zrem", key, id)
        end
    end
    if fields[2] and fields[2] ~= "" then
        local errors = dead .. ":errors"
        if tonumber(redis.call("zincrby", errors, -1, fields[2])) <= 0 then
            redis.call("zrem", errors, fields[2])
        end
    end
    redis.call("hdel", meta_key, "dead_index", "error_group")
end


-- Takes from the dead set the dead jobs an operator's retry or discard is
-- about, and returns them: in "all" mode (ARGV[3]) up to ARGV[4] of those
-- in `source` (the dead set or one of its indexes) that failed at or before
-- ARGV[5], oldest first; otherwise the ids from ARGV[4] that are dead. An
-- id of an index that is not dead is an entry left behind: it is dropped
-- from the index so no later call takes it again.
local function dead_take(dead, source)
    local candidates
    if ARGV[3] == "all" then
        candidates = redis.call("zrangebyscore", source, "-inf", ARGV[5], "LIMIT", 0, tonumber(ARGV[4]))
    else
        candidates = {unpack(ARGV, 4)}
    end
    local taken = {}
    for _, id in ipairs(candidates) do
        if redis.call("zrem", dead, id) == 1 then
            taken[#taken + 1] = id
        elseif source ~= dead then
            redis.call("zrem", source, id)
        end
    end
    return taken
end
