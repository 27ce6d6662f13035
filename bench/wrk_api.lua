-- wrk script used by bench/control.py: one control-plane API call, repeated.
--
-- Parameters (environment, set by control.py):
--   API_METHOD   GET or POST (or DELETE)
--   API_PATH     request path
--   API_KEY      the X-API-Key header value (empty: none)
--   API_BODY     JSON body for POST; "%n" in it is replaced by a number unique to the request
--                (thread id and counter), so writes of unique names do not collide
-- done() prints one line starting with BENCHJSON: requests, errors by kind, non-2xx responses,
-- latency percentiles in microseconds.

local method = os.getenv("API_METHOD") or "GET"
local path = os.getenv("API_PATH") or "/health/live"
local key = os.getenv("API_KEY") or ""
local body = os.getenv("API_BODY") or ""
local run = os.getenv("API_RUN") or "0"
local threads = {}
local nthreads = 0

function setup(thread)
   thread:set("tid", nthreads)
   nthreads = nthreads + 1
   table.insert(threads, thread)
end

function init(args)
   counter = 0
   bad = 0
   headers = { ["Content-Type"] = "application/json" }
   if key ~= "" then headers["X-API-Key"] = key end
end

function request()
   counter = counter + 1
   local b = nil
   if body ~= "" then b = string.gsub(body, "%%n", run .. "x" .. tid .. "x" .. counter) end
   return wrk.format(method, path, headers, b)
end

function response(status, hdrs, b)
   if status < 200 or status > 299 then bad = bad + 1 end
end

function done(summary, latency, requests)
   local bad_total = 0
   for _, t in ipairs(threads) do bad_total = bad_total + (t:get("bad") or 0) end
   io.write(string.format(
      'BENCHJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
      '"write_errors": %d, "timeouts": %d, "non2xx": %d, "p50": %d, "p95": %d, "p99": %d, "max": %d}\n',
      summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.timeout, bad_total,
      latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
