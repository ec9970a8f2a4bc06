-- Herald queue: one page of the dead jobs listed in every one of several
-- indexes (a filter on more than one label or error group), newest
-- failure first. Reads only.
--
-- KEYS[1..] the index zsets (see dead_index.lua)
-- ARGV[1] offset   ARGV[2] limit   ARGV[3] most ids examined
-- The smallest index is walked from its newest end in slices; each id is
-- kept if every other index holds it. The walk stops when the page is
-- full or ARGV[3] ids were examined (the dead set is capped, so this bound
-- is only a guard). Returns {id, score, id, score, ...}.

local offset, limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local SLICE = 256

local smallest, size = 1, redis.call("zcard", KEYS[1])
for k = 2, #KEYS do
    local n = redis.call("zcard", KEYS[k])
    if n < size then
        smallest, size = k, n
    end
end

local page, skipped, examined, start = {}, 0, 0, 0
while #page < 2 * limit and start < size and examined < budget do
    local slice = redis.call("zrevrange", KEYS[smallest], start, start + SLICE - 1, "WITHSCORES")
    start = start + SLICE
    for j = 1, #slice, 2 do
        local id = slice[j]
        examined = examined + 1
        local everywhere = true
        for k = 1, #KEYS do
            if k ~= smallest and not redis.call("zscore", KEYS[k], id) then
                everywhere = false
                break
            end
        end
        if everywhere then
            if skipped < offset then
                skipped = skipped + 1
            elseif #page < 2 * limit then
                page[#page + 1] = id
                page[#page + 1] = slice[j + 1]
            end
        end
    end
end
return page
