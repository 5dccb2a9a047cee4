-- wrk script of bench/http_reads.py: GET /v1/customers/<random entity id>?purpose=support.
--
--   wrk --latency -t1 -c8 -d15s -s bench/http_reads.lua http://127.0.0.1:PORT -- IDS_FILE TOKEN SEED
--
-- IDS_FILE holds one entity id a line; TOKEN (may be empty) goes into the Authorization header; SEED makes
-- the sequence of ids the same for every server measured. done() prints one machine-readable line,
-- "BENCH_RESULT {json}", with the counts and the latency percentiles in microseconds.

local ids = {}

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("no entity ids in " .. path)
  end
  local token = args[2]
  if token ~= nil and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  math.randomseed(tonumber(args[3] or "1"))
end

function request()
  return wrk.format("GET", "/v1/customers/" .. ids[math.random(#ids)] .. "?purpose=support")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max
  ))
end
