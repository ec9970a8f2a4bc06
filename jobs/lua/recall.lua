-- Herald queue: recall a scheduled job before it has run.
--
-- KEYS[1] data hash   KEYS[2] ready list   KEYS[3] scheduled zset
-- ARGV[1] meta key prefix ("<queue>:meta")   ARGV[2] job id
-- ARGV[3] the caller's account id (hex): a job of another account is
--         treated as absent, so the answer tells nothing about it.
--
-- A job is recalled only if it has never started: no attempt recorded, no
-- retry or deferral time set, never handed back from a worker that died
-- (recover.lua marks those "recovered"), and still waiting in the ready
-- list or the scheduled set. A leased job is in neither. Because a fetch
-- and this script each run atomically, a job is either taken by a worker
-- or recalled, never both. A recalled job's payload and metadata are
-- deleted: nothing of it runs.
-- Returns "recalled", "started" (it has run, is running or finished) or
-- "absent" (no such job of this account on this queue).

local data, active, scheduled = KEYS[1], KEYS[2], KEYS[3]
local id, account = ARGV[2], ARGV[3]
local meta_key = ARGV[1] .. ":" .. id

local payload = redis.call("hget", data, id)
if not payload then
    return "absent"
end
local decoded, job = pcall(cjson.decode, payload)
if not decoded or type(job) ~= "table" or job["accountId"] ~= account then
    return "absent"
end

local meta = redis.call("hmget", meta_key, "attempts", "run_at", "recovered")
if (tonumber(meta[1]) or 0) > 0 or meta[2] or meta[3] then
    return "started"
end
if redis.call("zrem", scheduled, id) == 0 and redis.call("lrem", active, 1, id) == 0 then
    return "started"
end
redis.call("hdel", data, id)
redis.call("del", meta_key)
return "recalled"
