-- wrk script for the benchmark: sends one prepared request body (multipart or JSON) read once
-- from a file, and prints a JSON summary with the latency percentiles when done.
-- Environment: WRK_BODY (path of the body), WRK_CONTENT_TYPE, WRK_PATH.
local file = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH")
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE")
file:close()

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
