-- wrk script for bench/http.sh: the worklist (/api/worklist) with varied
-- queries, as many open worklist pages ask (an earlier covct reused the
-- answer to the very same query for a second; the worklist now answers
-- every query from its in-memory copy, src/http/worklist.c).  The
-- parameters are the ones src/http/worklist.c reads and web/index.js sends:
--   q       patient name / ID / accession / description substring
--   from,to study date range (YYYYMMDD)
--   limit   page size (1..PAGE_MAX), offset  rows to skip
-- The worklist has no sort parameter: its order is fixed (most severe
-- analysed study first, then newest).  The bench's studies are named
-- P00000^SYNTHETIC .. and have IDs SYN00000 .., dated 2020-MM-DD.
--
-- Each wrk thread walks its own sequence (seeded by its number), so every
-- request of a run is one of about 200,000 distinct URLs: a repeat within
-- one second (a cache hit) is rare.  N_STUDIES in the environment (as
-- bench/http.sh sets it) bounds the offsets.

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
    table.insert(threads, thread)
end

local n_studies = tonumber(os.getenv("N_STUDIES") or "10000")
local i = 0
local seed = 1

function init(args)
    seed = (tonumber(id) or 1) * 7919
end

-- A small linear congruential generator: deterministic per thread, and
-- independent of Lua's math.random state shared by nothing here.
local function rnd(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return math.floor(seed / 65536) % n
end

local limits = { 25, 50, 50, 100 }

function request()
    i = i + 1
    local kind = i % 4
    local limit = limits[rnd(#limits) + 1]
    local pages = math.max(1, math.floor(n_studies / limit))
    local offset = rnd(math.min(pages, 200)) * limit
    local path
    if kind == 0 then
        -- the plain list, a page somewhere in it (the pages scroll)
        path = string.format("/api/worklist?limit=%d&offset=%d", limit, offset)
    elseif kind == 1 then
        -- a search by name: "P" and 2 to 4 digits matches 1 to 100 studies
        local digits = 2 + rnd(3)
        local q = "P" .. string.format("%0" .. digits .. "d", rnd(10 ^ digits))
        path = string.format("/api/worklist?q=%s&limit=%d&offset=%d", q,
                             limit, rnd(2) * limit)
    elseif kind == 2 then
        -- a search by patient ID substring
        local q = string.format("SYN%03d", rnd(1000))
        path = string.format("/api/worklist?q=%s&limit=%d", q, limit)
    else
        -- a date range of 1 to 60 days in 2020, a page of it
        local m, d = 1 + rnd(12), 1 + rnd(28)
        local days = 1 + rnd(60)
        local m2, d2 = m + math.floor((d + days) / 29), (d + days) % 28 + 1
        if m2 > 12 then m2, d2 = 12, 31 end
        path = string.format(
            "/api/worklist?from=2020%02d%02d&to=2020%02d%02d&limit=%d&offset=%d",
            m, d, m2, d2, limit, rnd(4) * limit)
    end
    return wrk.format("GET", path)
end
