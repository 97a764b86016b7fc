-- wrk script: rotates through the keys in $KEYS_FILE (one per line) as Bearer tokens.
-- No `response` callback: with one, wrk hands every answer's headers and body to Lua, which
-- cost it 0.55-0.75 us more on each of keyward's answers (whose values change every time)
-- than on a fixed one of the same shape (docs/BENCHMARKS.md). The runner checks the answers
-- with wrk's own count of non-2xx ones and keyward's metrics (bench/run.py).
local keys = {}

function init(args)
  for line in io.lines(os.getenv("KEYS_FILE")) do
    keys[#keys + 1] = line
  end
  i = math.random(#keys)
end

function request()
  i = i % #keys + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. keys[i] })
end

function done(summary, latency, requests)
  io.write(string.format("LATENCY p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
