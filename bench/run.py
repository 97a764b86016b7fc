#!/usr/bin/env python3
"""keyward's HTTP benchmarks: throughput, server CPU per request and latency of key checks,
against a bare axum hello-world measured in the same run. See bench/README.md.

Runs the keyward release binary with its default configuration (every middleware on) on
CPU 0 and the load generator on CPU 1. Standard library only.
"""
import argparse
import base64
import json
import os
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from http.client import HTTPConnection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYWARD = os.path.join(ROOT, "target", "release", "keyward")
TOOLS_TARGET = os.path.join(ROOT, "target", "bench-tools")
HELLO = os.path.join(TOOLS_TARGET, "release", "hello")
LOADGEN = os.path.join(TOOLS_TARGET, "release", "loadgen")
TICKS = os.sysconf("SC_CLK_TCK")
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
# wrk's connections: also the most answers still in flight when it stops.
CONNECTIONS = 64


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build():
    log("building keyward (release) and the bench tools ...")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "keyward"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path", "bench/tools/Cargo.toml"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": TOOLS_TARGET})


def b62(n, width):
    out = []
    for _ in range(width):
        out.append(B62[n % 62])
        n //= 62
    return "".join(reversed(out))


def well_formed_unknown_key(rng):
    """A key with a valid checksum that no one created: passes the format check, unknown."""
    body = "kw_" + "".join(rng.choice(B62) for _ in range(32))
    return body + b62(zlib.crc32(body.encode()), 6)


def malformed_key(rng):
    key = well_formed_unknown_key(rng)
    return key[:-1] + ("0" if key[-1] != "0" else "1")


class Server:
    """A server process pinned to one CPU; knows its address, start-up time, CPU and RSS."""

    def __init__(self, argv, cwd, cpu=0, env=None):
        started = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        self.startup_s = time.monotonic() - started
        if not line.startswith("Listening on "):
            raise SystemExit(f"server did not start: {line!r}")
        self.base = line[len("Listening on "):]
        self.addr = self.base[len("http://"):]

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def rss_mib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def metrics_text(server):
    """keyward's `/metrics`; None for a server without them (the hello-world)."""
    try:
        with urllib.request.urlopen(server.base + "/metrics") as r:
            return r.read().decode()
    except urllib.error.HTTPError:
        return None


def answered(server, route):
    """keyward's own count of the answers it gave on `route`, by status, and of the verify
    API's answers by code (`verified:valid`, ...), from its `/metrics`; None for a server
    without them."""
    text = metrics_text(server)
    if text is None:
        return None
    counts = {}
    for m in re.finditer(r'^keyward_http_requests_total\{method="[A-Z]+",route="([^"]*)",status="(\d+)"\} (\d+)$',
                         text, re.M):
        if m.group(1) == route:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(3))
    if route == "/v1/keys/verify":
        for m in re.finditer(r'^keyward_verifications_total\{code="([a-z_]+)"\} (\d+)$', text, re.M):
            counts["verified:" + m.group(1)] = int(m.group(2))
    return counts


def answered_settled(server, route):
    """`answered`, once the requests still in flight when wrk stopped are answered: read until
    two readings a moment apart agree."""
    last = answered(server, route)
    while True:
        time.sleep(0.1)
        now = answered(server, route)
        if now == last:
            return now
        last = now


def wrk(server, path, keys_file, seconds, expect, mode=None, caller=None, check_metrics=True):
    """Runs wrk (1 thread, CONNECTIONS connections) on CPU 1; returns the figures of the run.
    `mode` is `verify` or `forward` for bench/verify.lua, else keys go in `Authorization`.

    Fails on any answer but `expect` (for the verify API, always a 200: on any code but
    `valid`). Neither wrk script has a per-answer Lua callback: with one, wrk hands every
    answer's headers and body to LuaJIT, and spent 0.55-0.75 us more of its own time on each
    of keyward's answers, whose values change every time, than on a fixed answer of the same
    shape: a load-generator cost that grew with the answer's variety, not the server's work
    (docs/BENCHMARKS.md, 2026-12-04 later). Instead wrk's own count of non-2xx answers says
    whether any answer was of the wrong class, and keyward's metrics, read before and after,
    give the exact statuses (and verify codes) it answered with (`check_metrics=False` leaves
    that out, for a run whose server's work is being counted)."""
    env = {**os.environ, "KEYS_FILE": keys_file or os.devnull, "MODE": mode or "", "CALLER_KEY": caller or ""}
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if mode:
        argv += ["-s", os.path.join(ROOT, "bench", "verify.lua")]
    elif keys_file:
        argv += ["-s", os.path.join(ROOT, "bench", "rotate.lua")]
    before = answered(server, path) if keys_file and check_metrics else None
    cpu_before, steal_before = server.cpu_seconds(), steal_ticks()
    out = subprocess.run(argv + [server.base + path], capture_output=True, text=True, env=env, check=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    stolen = stolen_since(steal_before)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    statuses = {}
    if before is not None:
        after = answered_settled(server, path)
        statuses = {s: n - before.get(s, 0) for s, n in after.items() if n - before.get(s, 0)}
        # wrk does not count the answers still on their way when it stopped, one a connection
        # at most; keyward counts them. Fewer than wrk's would be answers it never counted.
        for label, counted in (("answers", sum(n for s, n in statuses.items() if s.isdigit())),
                               ("verifications", sum(n for s, n in statuses.items() if s.startswith("verified:")))):
            if (label == "answers" or mode == "verify") and not requests <= counted <= requests + CONNECTIONS:
                raise SystemExit(f"keyward counted {counted} {label} on {path}, wrk {requests} "
                                 f"(and up to {CONNECTIONS} in flight)")
    wanted = {str(expect)} | ({"verified:valid"} if mode == "verify" else set())
    unexpected = {s: n for s, n in statuses.items() if s not in wanted}
    if unexpected:
        raise SystemExit(f"unexpected answers on {path}: {unexpected} (expected only {sorted(wanted)})")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    refused = int(errors.group(1)) if errors else 0
    if expect == 200 and refused:
        raise SystemExit(f"non-2xx answers in a valid-key run: {refused}")
    if expect != 200 and refused != requests:
        raise SystemExit(f"{requests - refused} of {requests} answers were 2xx or 3xx, expected only {expect}")
    lat = re.search(r"LATENCY p50_us=(\d+) p99_us=(\d+)", out)
    if lat:
        p50, p99 = int(lat.group(1)), int(lat.group(2))
    else:
        p50 = parse_wrk_latency(out, "50")
        p99 = parse_wrk_latency(out, "99")
    return {"requests": requests, "rps": rps, "p50_us": p50, "p99_us": p99,
            "cpu_us_per_req": cpu * 1e6 / max(requests, 1), "statuses": statuses, **stolen}


def median_run(runs):
    """The run with the median CPU per request (its other figures come with it)."""
    return sorted(runs, key=lambda r: r["cpu_us_per_req"])[len(runs) // 2]


def alternated(rounds, baseline, measured, describe, others=None):
    """`rounds` rounds of one `baseline()` run and one `measured()` run (then one run of each
    of `others`, a dict of name to function), so that a slow stretch of the machine weighs on
    all. Returns the median run of the baseline and the measured, each round's ratios
    (measured ÷ baseline) of CPU per request and of requests per second, and for each of
    `others` its median run and its rounds' CPU per request ÷ the measured run's of the same
    round."""
    others = others or {}
    base_runs, runs, other_runs = [], [], {name: [] for name in others}
    for i in range(rounds):
        base_runs.append(baseline())
        runs.append(measured())
        for name, run in others.items():
            other_runs[name].append(run())
        log(describe(i + 1, base_runs[-1], runs[-1]))
    ratios = [{"cpu_ratio": m["cpu_us_per_req"] / b["cpu_us_per_req"], "rps_ratio": m["rps"] / b["rps"],
               "steal_ms_cpu0": (b["steal_ms_cpu0"], m["steal_ms_cpu0"])}
              for b, m in zip(base_runs, runs)]
    compared = {name: {"median": median_run(rs),
                       "cpu_vs_measured": [r["cpu_us_per_req"] / m["cpu_us_per_req"] for r, m in zip(rs, runs)]}
                for name, rs in other_runs.items()}
    return median_run(base_runs), median_run(runs), ratios, compared


def paired_medians(rounds):
    """The medians of the rounds' own ratios. Each ratio compares two runs made back to back,
    so a slow stretch of the machine cancels out of it; the ratio of two separate medians
    can pair a fast ceiling round with a slow keyward round (and, with an even number of
    rounds, takes the upper of the middle two)."""
    return (statistics.median(x["cpu_ratio"] for x in rounds),
            statistics.median(x["rps_ratio"] for x in rounds))


def parse_wrk_latency(out, percentile):
    m = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not m:
        raise SystemExit(f"cannot read the {percentile}th percentile from wrk:\n{out}")
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1_000_000}[m.group(2)]


def keyward(workdir, *args, stdin=None):
    out = subprocess.run([KEYWARD, "--json", *args], cwd=workdir, capture_output=True, text=True, check=True,
                         input=stdin)
    return json.loads(out.stdout) if out.stdout.strip() else None


def prepare_store(workdir, n_keys, limit=1_000_000_000):
    with open(os.path.join(workdir, "keyward.toml"), "w") as f:
        f.write(f'[plans.bench]\napi_access = true\nrate_limit = {{ limit = {limit}, window_seconds = 60 }}\n'
                '[forward]\ndefault_capability = "content:read"\n')
    keyward(workdir, "org", "create", "--name", "Bench", "--slug", "bench", "--plan", "bench")
    admin = keyward(workdir, "agent", "create", "--org", "bench", "--name", "Admin",
                    "--capabilities", "account:read,keys:write,keys:verify,content:read")["first_key"]["secret"]
    keyward(workdir, "agent", "create", "--org", "bench", "--name", "Load", "--capabilities", "content:read")
    started = time.monotonic()
    keyward(workdir, "dev", "seed-keys", "--org", "bench", "--agent", "Load", "--count", str(n_keys),
            "--out", os.path.join(workdir, "keys.txt"))
    seeded = time.monotonic() - started
    # Written to disk before any server starts: a start-up right after seeding a million keys
    # otherwise waits for the system to write back half a gigabyte (its first commit's fsync
    # did: 0.15-0.23 s, against 0.006 s once the disk had caught up).
    os.sync()
    return admin, seeded


def write_keys(path, keys):
    with open(path, "w") as f:
        f.write("\n".join(keys) + "\n")


def request(base, path, key, method="GET", body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def usage_check(server, admin, workdir, n=1000):
    """Sends exactly `n` requests with one key and checks its usage series says `n`."""
    agent = keyward(workdir, "agent", "list", "--org", "bench")["data"]
    load_agent = next(a["id"] for a in agent if a["name"] == "Load")
    status, key = request(server.base, f"/v1/agents/{load_agent}/keys", admin, "POST", {"name": "usage-check"})
    assert status == 201, key
    conn = HTTPConnection(server.addr)
    for _ in range(n):
        conn.request("GET", "/v1/whoami", headers={"Authorization": f"Bearer {key['secret']}"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
    time.sleep(2.5)  # usage is flushed every second
    status, usage = request(server.base, f"/v1/usage?key_id={key['id']}&granularity=minute", admin)
    counted = sum(p["requests"] for p in usage["data"])
    if counted != n:
        raise SystemExit(f"usage series says {counted} requests for a key that sent {n}")
    return counted


def revocation_bound(server, admin, workdir, trials):
    """Revokes warm keys from another process (the CLI) and times until the server refuses them."""
    agents = keyward(workdir, "agent", "list", "--org", "bench")["data"]
    load_agent = next(a["id"] for a in agents if a["name"] == "Load")
    delays, same_node_misses = [], 0
    conn = HTTPConnection(server.addr)

    def status_of(key):
        conn.request("GET", "/v1/whoami", headers={"Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        r.read()
        return r.status

    for _ in range(trials):
        _, key = request(server.base, f"/v1/agents/{load_agent}/keys", admin, "POST", {"name": "revocation-bound"})
        assert status_of(key["secret"]) == 200
        subprocess.run([KEYWARD, "key", "revoke", key["id"]], cwd=workdir, check=True, capture_output=True)
        revoked_at = time.monotonic()
        while status_of(key["secret"]) != 401:
            if time.monotonic() - revoked_at > 1.0:
                raise SystemExit("a key revoked by another process was still accepted after 1 s")
            time.sleep(0.002)
        delays.append((time.monotonic() - revoked_at) * 1000)
        # Same node: revoke through the API, the very next request must fail.
        _, key = request(server.base, f"/v1/agents/{load_agent}/keys", admin, "POST", {"name": "same-node"})
        assert status_of(key["secret"]) == 200
        request(server.base, f"/v1/keys/{key['id']}/revoke", admin, "POST", {})
        if status_of(key["secret"]) != 401:
            same_node_misses += 1
    delays.sort()
    q = lambda p: delays[min(len(delays) - 1, int(len(delays) * p))]
    return {"trials": trials, "min_ms": delays[0], "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
            "max_ms": delays[-1], "same_node_misses": same_node_misses}


def steal_ticks():
    """Ticks each CPU's vCPU spent waiting while the hypervisor ran something else, from
    /proc/stat: the stalls of the machine itself, which no server can do anything about."""
    steal = {}
    for line in open("/proc/stat"):
        parts = line.split()
        if parts[0].startswith("cpu") and parts[0] != "cpu":
            steal[int(parts[0][3:])] = int(parts[8])
    return steal


def stolen_since(before):
    """The milliseconds the hypervisor took from CPU 0 and CPU 1 since `before` (a
    `steal_ticks()` reading), as `steal_ms_cpu0` and `steal_ms_cpu1`."""
    after = steal_ticks()
    return {f"steal_ms_cpu{cpu}": (after.get(cpu, 0) - before.get(cpu, 0)) * 1000 / TICKS for cpu in (0, 1)}


STALL_PROBE = """
import sys, time
clock, end = time.perf_counter_ns, time.perf_counter_ns() + int(float(sys.argv[1]) * 1e9)
last, gaps = clock(), []
while last < end:
    t = clock()
    if t - last > 1_000_000:
        gaps.append(t - last)
    last = t
print(len(gaps), sum(gaps), max(gaps, default=0), sum(g - 1_000_000 for g in gaps))
"""


def machine_stalls(seconds):
    """The machine's own stalls: on each CPU at once, a loop that only reads the clock, and
    the gaps of over 1 ms it saw (the hypervisor or the host running something else). No
    server can answer faster than its CPU runs; a p99 at a fixed rate is to be read beside
    these: a request that arrives in the first (gap - 1 ms) of a gap waits over 1 ms, so where
    that share of the time (`waits_over_1ms_share`) exceeds 1 %, no server on that CPU can hold
    a p99 under 1 ms at a steady rate in that stretch."""
    probes = {cpu: subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", STALL_PROBE, str(seconds)],
                                    stdout=subprocess.PIPE, text=True) for cpu in (0, 1)}
    stalls = {}
    for cpu, probe in probes.items():
        count, total_ns, longest_ns, over_ns = (int(x) for x in probe.communicate()[0].split())
        stalls[cpu] = {"over_1ms_per_s": count / seconds, "lost_ms_per_s": total_ns / 1e6 / seconds,
                       "longest_ms": longest_ns / 1e6, "waits_over_1ms_share": over_ns / 1e9 / seconds}
    return stalls


def loadgen(server, keys_file, rate, seconds, path="/v1/whoami"):
    """A fixed-rate run on CPU 1; with the server's CPU per request at that rate and the
    milliseconds each CPU's time was stolen meanwhile."""
    before, cpu_before = steal_ticks(), server.cpu_seconds()
    out = subprocess.run(["taskset", "-c", "1", LOADGEN, "--url", server.base + path, "--rate", str(int(rate)),
                          "--duration", str(seconds), "--connections", "64", "--keys", keys_file],
                         capture_output=True, text=True, check=True).stdout
    r = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)}
    r.update(stolen_since(before))
    r["cpu_us_per_req"] = (server.cpu_seconds() - cpu_before) * 1e6 / max(r["requests"], 1)
    return r


def fixed_rate_rounds(rounds, server, hello, keys_file, rate, seconds):
    """Latency at a fixed rate in rounds alternating keyward and the ceiling (both up on CPU 0,
    only the driven one works), so that a stalled stretch of the machine weighs on both.
    Returns each side's run with the median p99, and every round."""
    pairs = []
    for i in range(rounds):
        k = loadgen(server, keys_file, rate, seconds)
        h = loadgen(hello, keys_file, rate, seconds)
        pairs.append({"keyward": k, "hello": h})
        log(f"latency round {i + 1} at {rate:.0f} req/s: CPU {k['cpu_us_per_req']:.2f} against "
            f"{h['cpu_us_per_req']:.2f} µs/req; keyward p99 {k['p99_us']:.0f} µs "
            f"(seconds' p99 median {k['window_p99_median_us']:.0f}, worst {k['window_p99_max_us']:.0f}; "
            f"steal {k['steal_ms_cpu0']:.0f}/{k['steal_ms_cpu1']:.0f} ms), hello-world p99 {h['p99_us']:.0f} µs "
            f"(median {h['window_p99_median_us']:.0f}, worst {h['window_p99_max_us']:.0f}; "
            f"steal {h['steal_ms_cpu0']:.0f}/{h['steal_ms_cpu1']:.0f} ms)")
    by_p99 = lambda side: sorted((p[side] for p in pairs), key=lambda r: r["p99_us"])[len(pairs) // 2]
    return by_p99("keyward"), by_p99("hello"), pairs


def redis_cpu_seconds(url):
    out = subprocess.run(["redis-cli", "-u", url, "INFO", "cpu"], capture_output=True, text=True, check=True).stdout
    fields = dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def compare_limiters(a, redis_url):
    """`GET /v1/whoami` with valid keys, the in-process limiter against Redis, alternated
    (local, Redis, local, Redis) so that drift of a noisy machine shows. The plan allows 10 000
    per minute, so both limiters keep exact logs and no request is refused."""
    work = tempfile.mkdtemp(prefix="keyward-bench-limiter-")
    prepare_store(work, a.keys, limit=10_000)
    keys_file = os.path.join(work, "keys.txt")
    runs = []
    for name, extra in [("local", []), ("redis", ["--redis-url", redis_url])] * 2:
        server = Server([KEYWARD, "serve", "--listen", "127.0.0.1:0", *extra], cwd=work)
        wrk(server, "/v1/whoami", keys_file, 3, 200)  # warm the cache
        redis_before = redis_cpu_seconds(redis_url)
        r = wrk(server, "/v1/whoami", keys_file, a.duration, 200)
        r["redis_cpu_us_per_req"] = (redis_cpu_seconds(redis_url) - redis_before) * 1e6 / max(r["requests"], 1)
        server.stop()
        r["limiter"] = name
        runs.append(r)
        log(f"whoami, {name} limiter: {r['rps']:.0f} req/s, server {r['cpu_us_per_req']:.2f} µs CPU/req, "
            f"Redis {r['redis_cpu_us_per_req']:.2f} µs CPU/req, p50 {r['p50_us']} µs, p99 {r['p99_us']} µs")
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=10_000, help="keys to seed (default 10000)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--scale", type=int, default=0, help="also run with this many keys (e.g. 1000000)")
    ap.add_argument("--revocations", type=int, default=30, help="revocation trials (default 30)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds alternating the ceiling and keyward's valid-key run (default 3)")
    ap.add_argument("--latency-rounds", type=int, default=3,
                    help="rounds alternating keyward and the ceiling at half of peak (default 3)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--compare-redis", metavar="URL",
                    help="only compare the in-process and the Redis limiter, with the Redis at URL")
    a = ap.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed: apt-get install wrk util-linux")
    if not a.skip_build:
        build()
    rng = random.Random(7)
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "duration_s": a.duration}
    if a.compare_redis:
        results["limiters"] = compare_limiters(a, a.compare_redis)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
        return

    work = tempfile.mkdtemp(prefix="keyward-bench-")
    admin, seed_s = prepare_store(work, a.keys)
    keys_file = os.path.join(work, "keys.txt")

    # The ceiling, driven exactly as keyward is: the same path, wrk script and keys. (The
    # script's per-request Lua work makes wrk itself slower, so a ceiling measured with bare
    # wrk would be a faster generator's figure; that one is kept as a reference.)
    hello = Server([HELLO, "127.0.0.1:0"], cwd=ROOT)
    wrk(hello, "/v1/whoami", keys_file, 3, 200)
    results["hello_bare_wrk"] = wrk(hello, "/", None, a.duration, 200)
    # A reference: the hello-world sending a fixed answer of whoami's shape (its headers and
    # body size), to tell the cost of that answer apart from the cost of checking the key.
    results["hello_shaped"] = wrk(hello, "/v1/whoami-shaped", keys_file, a.duration, 200)

    write_keys(os.path.join(work, "unknown.txt"), [well_formed_unknown_key(rng) for _ in range(10_000)])
    write_keys(os.path.join(work, "malformed.txt"), [malformed_key(rng) for _ in range(10_000)])
    server = Server([KEYWARD, "serve", "--listen", "127.0.0.1:0"], cwd=work)
    results["keyward_10k"] = {"startup_s": server.startup_s, "seed_s": seed_s}
    wrk(server, "/v1/whoami", keys_file, 3, 200)  # warm the cache
    # The unknown keys too: their first sight goes to storage, as the valid keys' does, and
    # neither is what the rounds measure. (Their entries expire after 60-90 s, so later
    # rounds still pay for the lookups that renew them.)
    wrk(server, "/v1/whoami", os.path.join(work, "unknown.txt"), 3, 401)
    # The comparison that the targets are about, in rounds that alternate the ceiling and
    # keyward (both servers stay up on CPU 0; only the one driven works), so that a slow
    # stretch of the machine weighs on both: the medians are reported, and each round's ratio.
    # Unknown and malformed keys run in the same rounds, right after the valid ones, so that
    # "rejected at least as cheaply" compares runs of the same moment.
    invalid = {name: (lambda f=f: wrk(server, "/v1/whoami", f, a.duration, 401))
               for name, f in [("unknown", os.path.join(work, "unknown.txt")),
                               ("malformed", os.path.join(work, "malformed.txt"))]}
    results["hello"], results["keyward_10k"]["valid"], results["rounds"], compared = alternated(
        a.rounds,
        lambda: wrk(hello, "/v1/whoami", keys_file, a.duration, 200),
        lambda: wrk(server, "/v1/whoami", keys_file, a.duration, 200),
        lambda i, c, v: f"round {i}: hello-world {c['cpu_us_per_req']:.2f} µs CPU/req, {c['rps']:.0f} req/s, "
                        f"whoami valid {v['cpu_us_per_req']:.2f} µs CPU/req, {v['rps']:.0f} req/s "
                        f"(CPU time the hypervisor took from CPU 0: {c['steal_ms_cpu0']:.0f} and "
                        f"{v['steal_ms_cpu0']:.0f} ms)",
        invalid)
    for name, c in compared.items():
        results["keyward_10k"][name] = c["median"]
        results["keyward_10k"][f"{name}_cpu_vs_valid"] = c["cpu_vs_measured"]
    hello.stop()
    log(f"hello-world: {results['hello']['rps']:.0f} req/s, {results['hello']['cpu_us_per_req']:.2f} µs CPU/req "
        f"(bare wrk: {results['hello_bare_wrk']['rps']:.0f} req/s, "
        f"{results['hello_bare_wrk']['cpu_us_per_req']:.2f} µs CPU/req)")
    for name in invalid:
        r = results["keyward_10k"][name]
        log(f"whoami {name}: {r['rps']:.0f} req/s, {r['cpu_us_per_req']:.2f} µs CPU/req, p99 {r['p99_us']:.0f} µs")
    # The same keys through the verify API (caller: the admin key) and forward auth.
    for name, route in [("verify", "/v1/keys/verify"), ("forward", "/v1/auth/forward")]:
        r = wrk(server, route, keys_file, a.duration, 200, mode=name, caller=admin)
        results["keyward_10k"][name] = r
        log(f"{name}: {r['rps']:.0f} req/s, {r['cpu_us_per_req']:.2f} µs CPU/req, p99 {r['p99_us']:.0f} µs")
    results["keyward_10k"]["rss_mib"] = server.rss_mib()
    peak = results["keyward_10k"]["valid"]["rps"]
    # The same rate against the ceiling, in alternating rounds: the tail of this machine and
    # the generator, to read keyward's beside.
    hello = Server([HELLO, "127.0.0.1:0"], cwd=ROOT)
    results["fixed_rate"], results["fixed_rate_hello"], results["fixed_rate_rounds"] = fixed_rate_rounds(
        a.latency_rounds, server, hello, keys_file, peak / 2, a.duration)
    hello.stop()
    results["stalls"] = machine_stalls(a.duration)
    log(f"the machine's own stalls: {results['stalls']}")
    results["usage_check"] = usage_check(server, admin, work)
    results["revocation"] = revocation_bound(server, admin, work, a.revocations)
    log(f"revocation bound: {results['revocation']}")
    server.stop()

    if a.scale:
        scale_work = tempfile.mkdtemp(prefix="keyward-bench-scale-")
        _, seed_s = prepare_store(scale_work, a.scale)
        everything = open(os.path.join(scale_work, "keys.txt")).read().split()
        write_keys(os.path.join(scale_work, "hot.txt"), rng.sample(everything, 10_000))
        del everything
        write_keys(os.path.join(scale_work, "unknown.txt"), [well_formed_unknown_key(rng) for _ in range(200_000)])
        big = Server([KEYWARD, "serve", "--listen", "127.0.0.1:0"], cwd=scale_work)
        scale = {"keys": a.scale, "seed_s": seed_s, "startup_s": big.startup_s, "rss_idle_mib": big.rss_mib()}
        hot = os.path.join(scale_work, "hot.txt")
        wrk(big, "/v1/whoami", hot, 3, 200)
        # The 10 000-key store again, for the comparison below (stopped above, so that the
        # fixed-rate runs had their core alone), warmed like the other.
        server = Server([KEYWARD, "serve", "--listen", "127.0.0.1:0"], cwd=work)
        wrk(server, "/v1/whoami", keys_file, 3, 200)
        # Against the 10 000-key server, in alternating rounds as for the ceiling: one run
        # each would compare two moments of a noisy machine as much as two key counts.
        scale["valid_10k_alternated"], scale["valid_hot"], scale["rounds"], _ = alternated(
            a.rounds,
            lambda: wrk(server, "/v1/whoami", keys_file, a.duration, 200),
            lambda: wrk(big, "/v1/whoami", hot, a.duration, 200),
            lambda i, s, b: f"scale round {i}: 10 000 keys {s['rps']:.0f} req/s, "
                            f"hot 10 000 of {a.scale} {b['rps']:.0f} req/s")
        server.stop()
        scale["rss_mib"] = big.rss_mib()
        scale["unknown_all_different"] = wrk(big, "/v1/whoami", os.path.join(scale_work, "unknown.txt"), a.duration, 401)
        scale["rss_after_unknown_mib"] = big.rss_mib()
        big.stop()
        results["keyward_scale"] = scale
        log(f"{a.scale} keys: {scale}")
        shutil.rmtree(scale_work, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)

    report(results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"


def report(r):
    h = r["hello"]
    print(f"\nmachine: {r['machine']}; {r['duration_s']} s per run; server on CPU 0, wrk -t1 -c64 on CPU 1\n")
    print("| run | req/s | × ceiling | p50 µs | p99 µs | server CPU µs/req | × ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [("hello-world (ceiling: same path, script and keys)", h),
            ("hello-world, bare wrk (no script; reference only)", r["hello_bare_wrk"]),
            ("hello-world sending a fixed answer of whoami's shape (reference only)", r["hello_shaped"])] + [(f"keyward whoami, {n} keys", r["keyward_10k"][n]) for n in ("valid", "unknown", "malformed")]
    rows += [("keyward POST /v1/keys/verify, valid keys", r["keyward_10k"]["verify"]),
             ("keyward GET /v1/auth/forward, valid keys", r["keyward_10k"]["forward"])]
    if "keyward_scale" in r:
        rows.append((f"keyward whoami, valid, hot 10k of {r['keyward_scale']['keys']}", r["keyward_scale"]["valid_hot"]))
        rows.append((f"keyward whoami, all-different unknown", r["keyward_scale"]["unknown_all_different"]))
    for name, x in rows:
        print(f"| {name} | {x['rps']:.0f} | {x['rps'] / h['rps']:.2f} | {x['p50_us']:.0f} | {x['p99_us']:.0f} | "
              f"{x['cpu_us_per_req']:.2f} | {x['cpu_us_per_req'] / h['cpu_us_per_req']:.2f} |")
    if "rounds" in r:
        print("\nper round, whoami valid ÷ ceiling: CPU " +
              ", ".join(f"{x['cpu_ratio']:.2f}" for x in r["rounds"]) + "; req/s " +
              ", ".join(f"{x['rps_ratio']:.2f}" for x in r["rounds"]) + " (the table shows each side's median run)")
        print("CPU time the hypervisor took from the servers' CPU in each round, ceiling/keyward (ms): " +
              ", ".join(f"{x['steal_ms_cpu0'][0]:.0f}/{x['steal_ms_cpu0'][1]:.0f}" for x in r["rounds"]))
        cpu, rps = paired_medians(r["rounds"])
        for name in ("unknown", "malformed"):
            vs = r["keyward_10k"].get(f"{name}_cpu_vs_valid")
            if vs:
                print(f"whoami {name} ÷ valid keys, CPU a request in the same round: median "
                      f"{statistics.median(vs):.3f} (rounds {', '.join(f'{x:.2f}' for x in vs)})")
        print(f"median of the rounds' ratios (each pair measured back to back; the figure the targets "
              f"are judged by): CPU {cpu:.3f}, req/s {rps:.3f}")
    print(f"\nfixed rate at half of peak, {len(r['fixed_rate_rounds'])} rounds alternating keyward and the ceiling "
          "(the run with the median p99 of each):")
    for name, key in [("keyward", "fixed_rate"), ("hello-world", "fixed_rate_hello")]:
        f = r[key]
        print(f"{name} {f['rate']:.0f} req/s: p50 {f['p50_us']:.0f} µs, p99 {f['p99_us']:.0f} µs, p999 {f['p999_us']:.0f} µs, "
              f"max {f['max_us']:.0f} µs; seconds' p99 median {f['window_p99_median_us']:.0f} µs, worst "
              f"{f['window_p99_max_us']:.0f} µs; late sends {f.get('late_sends', 0):.0f}")
    ratios = sorted(p["keyward"]["cpu_us_per_req"] / p["hello"]["cpu_us_per_req"] for p in r["fixed_rate_rounds"])
    print(f"server CPU per request at this rate, keyward ÷ hello-world: median {ratios[len(ratios) // 2]:.2f} "
          f"(rounds sorted: {', '.join(f'{x:.2f}' for x in ratios)}); at a fixed rate both get the same "
          "arrivals, so neither pays for the other's batching")
    print("p99 per round, keyward / hello-world (µs; CPU time stolen by the hypervisor on CPU 0 and 1, ms): " +
          ", ".join(f"{p['keyward']['p99_us']:.0f}/{p['hello']['p99_us']:.0f} "
                    f"({p['keyward']['steal_ms_cpu0'] + p['hello']['steal_ms_cpu0']:.0f}, "
                    f"{p['keyward']['steal_ms_cpu1'] + p['hello']['steal_ms_cpu1']:.0f})"
                    for p in r["fixed_rate_rounds"]))
    print("the machine's own stalls, a loop reading the clock on each CPU for one run's time (gaps over 1 ms "
          "a second, time lost in them, the longest): " +
          "; ".join(f"CPU {cpu}: {x['over_1ms_per_s']:.1f}/s, {x['lost_ms_per_s']:.1f} ms/s, {x['longest_ms']:.1f} ms"
                    for cpu, x in r["stalls"].items()) +
          " (a p99 at a fixed rate cannot be below the stalls that hit 1 % of the requests)")
    share = r["stalls"][0]["waits_over_1ms_share"] * 100
    print(f"share of CPU 0's time in which an arriving request would wait over 1 ms for the CPU itself: "
          f"{share:.2f} %" + (" (over 1 %: in that stretch no server on CPU 0 could hold a p99 of 1 ms)"
                              if share > 1 else ""))
    v = r["revocation"]
    print(f"cross-process revocation ({v['trials']} trials): min {v['min_ms']:.1f} ms, p50 {v['p50_ms']:.1f}, "
          f"p90 {v['p90_ms']:.1f}, p99 {v['p99_ms']:.1f}, max {v['max_ms']:.1f}; same-node misses: {v['same_node_misses']}")
    print(f"usage check: {r['usage_check']} requests sent and counted")
    k = r["keyward_10k"]
    print(f"10k keys: start-up {k['startup_s']:.2f} s, RSS {k['rss_mib']:.1f} MiB")
    if "keyward_scale" in r:
        s = r["keyward_scale"]
        print(f"{s['keys']} keys: seeded in {s['seed_s']:.0f} s, start-up {s['startup_s']:.2f} s, RSS idle {s['rss_idle_mib']:.1f} MiB, "
              f"after hot run {s['rss_mib']:.1f} MiB, after unknown flood {s['rss_after_unknown_mib']:.1f} MiB")
        ratios = [x["rps_ratio"] for x in s["rounds"]]
        print(f"hot 10 000 of {s['keys']} ÷ 10 000 keys, alternated: req/s median {sorted(ratios)[len(ratios) // 2]:.2f} "
              f"(rounds in order: {', '.join(f'{x:.2f}' for x in ratios)}); CPU per request "
              + ", ".join(f"{x['cpu_ratio']:.2f}" for x in s["rounds"]))


if __name__ == "__main__":
    main()
