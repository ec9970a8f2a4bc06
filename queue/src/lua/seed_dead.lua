-- Herald queue: write dead jobs as the complete script records them, in
-- bulk, for tests and benchmarks of the failed list at scale. Begins with
-- dead_index.lua.
--
-- KEYS[1] dead zset   KEYS[2] data hash
-- ARGV[1] meta key prefix   ARGV[2] labels ("name=/pointer;...")
-- ARGV[3..] groups of 5: id, payload, failed at (seconds), error text,
--           error group
-- Returns how many were written.

local dead, data = KEYS[1], KEYS[2]
local meta_prefix, labels = ARGV[1], ARGV[2]
local written = 0
for i = 3, #ARGV, 5 do
    local id, payload, at, err, group = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local meta_key = meta_prefix .. ":" .. id
    redis.call("hset", data, id, payload)
    redis.call("hset", meta_key, "status", "Failed", "attempts", 1, "done_at", at,
        "result", cjson.encode({Err = err}))
    redis.call("zadd", dead, at, id)
    dead_index(dead, meta_key, id, at, payload, labels, group)
    written = written + 1
end
return written
