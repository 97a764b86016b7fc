-- wrk script for the verify API and forward auth: rotates through the keys in $KEYS_FILE.
--   MODE=verify:  POST /v1/keys/verify {"key": K} with Authorization: Bearer $CALLER_KEY
--   MODE=forward: GET  /v1/auth/forward with the key and nginx's X-Original-* headers
-- Counts answers by status (and, for verify, `"valid":true` bodies) for the runner.
local keys = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("KEYS_FILE")) do
    keys[#keys + 1] = line
  end
  mode = os.getenv("MODE")
  caller = os.getenv("CALLER_KEY")
  counts = {}
  i = math.random(#keys)
end

function request()
  i = i % #keys + 1
  if mode == "verify" then
    return wrk.format("POST", "/v1/keys/verify",
      { ["Authorization"] = "Bearer " .. caller, ["Content-Type"] = "application/json" },
      '{"key":"' .. keys[i] .. '"}')
  end
  return wrk.format("GET", "/v1/auth/forward", {
    ["Authorization"] = "Bearer " .. keys[i],
    ["X-Original-Method"] = "GET",
    ["X-Original-URI"] = "/reports/daily",
  })
end

function response(status, headers, body)
  local label = tostring(status)
  if mode == "verify" and status == 200 and not string.find(body, '"valid":true', 1, true) then
    label = "200-invalid"
  end
  counts[label] = (counts[label] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = status .. "=" .. n
  end
  table.sort(parts)
  io.write("STATUSES " .. table.concat(parts, " ") .. "\n")
  io.write(string.format("LATENCY p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
