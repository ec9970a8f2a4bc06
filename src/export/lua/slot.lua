-- Takes one of an account's export slots for a run, or renews the slot the
-- run holds (see src/export/slots.rs).
--
-- KEYS[1]  the account's running set: member = run id, score = when its
--          lease ends (Unix ms, by this server's clock)
-- ARGV[1]  lease (ms)
-- ARGV[2]  most runs of the account at once
-- ARGV[3]  the run id
--
-- Returns 1 when the run holds a slot until now + lease, 0 when every slot
-- is held by another run whose lease has not ended.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
return 0
