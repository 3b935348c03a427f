-- wrk script for bench/: POSTs one JSON body (the file named by BENCH_BODY_FILE) with an optional bearer key
-- (BENCH_AUTH), and writes a JSON summary line (BENCH_RESULT {...}) at the end.
-- BENCH_MAX_REQUESTS caps the requests of each wrk thread: at the cap the thread stops and writes
-- "BENCH_CAP_REACHED"; bench/loadgen.py then sends wrk SIGINT, which ends the run and prints the summary.
-- BENCH_PROGRESS_EVERY writes "BENCH_PROGRESS <n>" every n answers (the soak mode reads it).
local body_file = os.getenv("BENCH_BODY_FILE")
local f = assert(io.open(body_file, "rb"), "cannot open BENCH_BODY_FILE")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. auth
end

local cap = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0")
local every = tonumber(os.getenv("BENCH_PROGRESS_EVERY") or "0")
if cap > 0 or every > 0 then
   local seen = 0
   -- Defining response() makes wrk hand every answer to Lua, so it is defined only when needed.
   function response(status, headers, body)
      seen = seen + 1
      if every > 0 and seen % every == 0 then
         io.write("BENCH_PROGRESS " .. seen .. "\n")
         io.flush()
      end
      if cap > 0 and seen == cap then
         io.write("BENCH_CAP_REACHED\n")
         io.flush()
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max))
end
