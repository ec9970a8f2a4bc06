-- Herald queue: the claims of idempotency keys (prefixed with claims.lua).
--
-- KEYS[1] "<prefix>:grids" (names the slot; see claims.lua)
-- ARGV[1] prefix "<queue>:idempotency"   ARGV[2] now (seconds)
-- ARGV[3..] keys
-- Returns, per key, its claim's value or false (nil in the reply).

local prefix, now = ARGV[1], tonumber(ARGV[2])
local grids = claim_grids(prefix, now)
local values = {}
for i = 3, #ARGV do
    values[i - 2] = claim_find(prefix, grids, now, ARGV[i]) or false
end
return values
