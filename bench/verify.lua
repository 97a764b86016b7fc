-- wrk script for the verify API and forward auth: rotates through the keys in $KEYS_FILE.
--   MODE=verify:  POST /v1/keys/verify {"key": K} with Authorization: Bearer $CALLER_KEY
--   MODE=forward: GET  /v1/auth/forward with the key and nginx's X-Original-* headers
-- No `response` callback, as in rotate.lua: the runner checks the answers with wrk's count of
-- non-2xx ones and keyward's metrics (statuses by route, and the verify API's answers by code).
local keys = {}

function init(args)
  for line in io.lines(os.getenv("KEYS_FILE")) do
    keys[#keys + 1] = line
  end
  mode = os.getenv("MODE")
  caller = os.getenv("CALLER_KEY")
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

function done(summary, latency, requests)
  io.write(string.format("LATENCY p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
