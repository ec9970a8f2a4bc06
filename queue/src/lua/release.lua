-- Herald queue: give leased but unstarted jobs back to the queue (shutdown).
--
-- KEYS[1] this worker's inflight set   KEYS[2] active list   KEYS[3] wake list
-- ARGV[1] meta key prefix   ARGV[2..] job ids (the caller sends bounded chunks)
-- Jobs go back to the head of the queue, in their original order, and an
-- idle worker is woken for them (see enqueue.lua).
-- Returns the number released.

local inflight, active, wake = KEYS[1], KEYS[2], KEYS[3]
local meta_prefix = ARGV[1]
local released = 0
for i = #ARGV, 2, -1 do
    local id = ARGV[i]
    if redis.call("srem", inflight, id) == 1 then
        redis.call("lpush", active, id)
        local meta_key = meta_prefix .. ":" .. id
        redis.call("hset", meta_key, "status", "Pending")
        redis.call("hdel", meta_key, "locked_by", "locked_at")
        released = released + 1
    end
end
if released > 0 and redis.call("llen", wake) == 0 then
    redis.call("lpush", wake, "1")
end
return released
