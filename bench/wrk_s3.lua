-- wrk script used by bench/run.py.
--
-- Reads its parameters from environment variables (set by run.py):
--   BENCH_METHOD      GET or PUT
--   BENCH_PATHS       file with one request path (path + presigned query) per line
--   BENCH_BODY        file whose bytes are the PUT body (ignored for GET)
--   BENCH_THREADS     number of wrk threads (-t)
--   BENCH_ENDPOINTS   optional: comma list of host:port (several nodes of one
--                     cluster). Line i (0-based) of BENCH_PATHS is then meant
--                     for endpoint i % #endpoints (presigned for that Host);
--                     wrk thread t connects to endpoint t % #endpoints (all of
--                     its connections; thread.addr) and sends that endpoint's
--                     lines with a matching Host header.
--
-- Without BENCH_ENDPOINTS every wrk thread takes the lines i (0-based) where
-- i % nthreads == thread id. Each thread builds all of its raw HTTP requests
-- once in init() (so no per-request string building happens in the hot loop)
-- and then round-robins over them.
-- done() prints one machine-readable line starting with BENCHJSON.

local nthreads = 0

local endpoints = {}
for ep in string.gmatch(os.getenv("BENCH_ENDPOINTS") or "", "[^,]+") do
   endpoints[#endpoints + 1] = ep
end

function setup(thread)
   thread:set("tid", nthreads)
   if #endpoints > 0 then
      local ep = endpoints[(nthreads % #endpoints) + 1]
      local host, port = string.match(ep, "^(.+):(%d+)$")
      local addrs = wrk.lookup(host, port)
      assert(addrs and #addrs > 0, "cannot resolve " .. ep)
      thread.addr = addrs[1]
   end
   nthreads = nthreads + 1
end

local function read_all(path)
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

local requests = {}
local count = 0
local index = 0

function init(args)
   local method = os.getenv("BENCH_METHOD") or "GET"
   local paths_file = assert(os.getenv("BENCH_PATHS"), "BENCH_PATHS not set")
   local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
   local body = nil
   if method == "PUT" then
      body = read_all(assert(os.getenv("BENCH_BODY"), "BENCH_BODY not set"))
   end
   local nep = #endpoints
   local headers = nil
   local ep, on_ep, slot = 0, 1, 0
   if nep > 0 then
      ep = tid % nep
      on_ep = math.floor((threads - 1 - ep) / nep) + 1  -- threads sharing this endpoint
      slot = math.floor(tid / nep)                      -- this thread's index among them
      headers = { Host = endpoints[ep + 1] }
   end
   local i = 0
   for line in io.lines(paths_file) do
      if line ~= "" then
         local mine
         if nep > 0 then
            mine = (i % nep == ep) and (math.floor(i / nep) % on_ep == slot)
         else
            mine = (i % threads == tid)
         end
         if mine then
            count = count + 1
            requests[count] = wrk.format(method, line, headers, body)
         end
         i = i + 1
      end
   end
   assert(count > 0, "no request paths for thread " .. tostring(tid))
   -- Spread threads over the pool so they do not all start on the same key.
   index = 0
end

function request()
   index = index + 1
   if index > count then index = 1 end
   return requests[index]
end

function done(summary, latency, requests_)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d,' ..
      '"lat_max_us":%d,"lat_mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
