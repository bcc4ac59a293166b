-- wrk script for the benchmark: sends one prepared request body (multipart or JSON) read once
-- from a file, and prints a JSON summary with the latency percentiles when done.
-- Environment: WRK_BODY (path of the body), WRK_CONTENT_TYPE, WRK_PATH, WRK_REQUESTS.
local file = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH")
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE")
file:close()

-- WRK_REQUESTS (optional): a fixed-count load (one thread). wrk stops after that many answers
-- and prints a summary of its own: answers, non-2xx answers and whole seconds, no latencies.
local limit = tonumber(os.getenv("WRK_REQUESTS") or "")
if limit then
  local answered, failed, started = 0, 0, os.time()
  function response(status, headers, body)
    answered = answered + 1
    if status >= 300 then
      failed = failed + 1
    end
    if answered == limit then
      io.write(string.format(
        'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": 0, "connect": 0, "read": 0, ' ..
        '"write": 0, "status": %d, "timeout": 0, "p50_us": 0, "p95_us": 0, "p99_us": 0, ' ..
        '"max_us": 0, "mean_us": 0}\n', answered, math.max(1, os.time() - started) * 1e6, failed))
      io.flush()
      os.exit(0)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
