-- wrk script: POST one pre-rendered JSON body per request, each used once (codes are single-use).
-- usage: wrk ... -s bench/scan.lua URL -- BODIES_FILE TOKEN
local bodies = {}
local i = 0
local headers = {["Content-Type"] = "application/json"}
local failures = nil

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  if args[2] and args[2] ~= "" then
    headers["Authorization"] = "Bearer " .. args[2]
  end
  if args[3] then
    failures = args[3]
  end
end

function response(status, headers, body)
  if status >= 300 and failures then
    local f = io.open(failures, "a")
    f:write(status, " ", body, "\n")
    f:close()
  end
end

function request()
  i = i + 1
  if i > #bodies then
    i = 1
  end
  return wrk.format("POST", nil, headers, bodies[i])
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "bodies": %d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, #bodies))
end
