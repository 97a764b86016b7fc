#!/usr/bin/env python3
"""Instructions a `GET /v1/whoami` request costs, keyward against the hello-world ceiling,
counted by valgrind's callgrind. See bench/README.md.

Unlike time, the count is the same from run to run whatever else the machine does, so it
tells a change of a few per cent apart on a machine too noisy to time it. It counts user
space only (not the kernel's share, nor waits for memory), so it complements the timed runs
of bench/run.py, it does not replace them. Standard library only; needs valgrind and wrk.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the timed benchmark's helpers: build, seeding, servers, wrk)

# The task that serves a connection, in each server: its inclusive count over the requests
# served is a request's, without the usage flush and fold that run once a second whatever the
# rate (under valgrind the rate is some twenty times lower, so the program's total would
# charge them twenty times over).
HELLO_CONNECTION = "axum::serve::handle_connection::{{closure}}::{{closure}}"
KEYWARD_CONNECTION = "keyward_server::http::serve::until_stopped::{{closure}}"
# valgrind's processor has no SHA extensions, so SHA-256 runs in software under it, at about
# twenty times the instructions of the real run: reported apart, and left out of the ratio.
SHA256 = "digest::Digest>::digest"


def inclusive(profile, name):
    """The inclusive count of the first function whose name contains `name`, or 0."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", profile],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(.*?\)\s+\S*?:(.*)", line)
        if m and re.search(re.escape(name) + r"(\s|$)", m.group(2)):
            return int(m.group(1).replace(",", ""))
    return 0


def counted(name, argv, connection, work, keys_file, warm_s, seconds):
    """Starts `argv` in `work` under callgrind with counting off (its profile goes there too),
    warms it up, counts `seconds` of load and returns (requests, instructions a request, of
    which SHA-256)."""
    profile = os.path.join(work, f"{name}.callgrind")
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}"]
    run.log(f"{name}: starting under callgrind ...")
    server = run.Server(valgrind + argv, cwd=work)
    try:
        # Warmed without counting: caches filled, the limiter's and the answers' state made.
        run.wrk(server, "/v1/whoami", keys_file, warm_s, 200)
        pid = str(server.proc.pid)
        subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=True)
        # wrk's own count of non-2xx answers still checks them; keyward's metrics, read before
        # and after, would be counted as its work.
        requests = run.wrk(server, "/v1/whoami", keys_file, seconds, 200, check_metrics=False)["requests"]
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True)
    finally:
        server.stop()
    dump = profile + ".1"
    total, sha = inclusive(dump, connection), inclusive(dump, SHA256)
    if total == 0:
        raise SystemExit(f"{name}: no count for {connection} in {dump}")
    return requests, total / requests, sha / requests


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=10_000, help="keys to seed and rotate through (default 10000)")
    ap.add_argument("--seconds", type=int, default=10, help="seconds counted per server (default 10)")
    ap.add_argument("--warm", type=int, default=10, help="seconds of warm-up, not counted (default 10)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the store and the profiles, and print where")
    a = ap.parse_args()
    for tool in ("valgrind", "callgrind_annotate", "callgrind_control", "wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install valgrind wrk util-linux")
    if not a.skip_build:
        run.build()
    work = tempfile.mkdtemp(prefix="keyward-instructions-")
    run.log(f"seeding {a.keys} keys ...")
    run.prepare_store(work, a.keys)
    keys_file = os.path.join(work, "keys.txt")

    hello = counted("hello-world", [run.HELLO, "127.0.0.1:0"], HELLO_CONNECTION, work, keys_file, a.warm, a.seconds)
    keyward = counted("keyward", [run.KEYWARD, "serve", "--listen", "127.0.0.1:0"], KEYWARD_CONNECTION,
                      work, keys_file, a.warm, a.seconds)

    print(f"\ninstructions a GET /v1/whoami request (user space, callgrind), {a.keys} keys in rotation:\n")
    print("| server | requests counted | instructions a request | of which SHA-256 (software under valgrind) | the rest |")
    print("|---|---:|---:|---:|---:|")
    for name, (requests, per, sha) in [("hello-world", hello), ("keyward", keyward)]:
        print(f"| {name} | {requests} | {per:.0f} | {sha:.0f} | {per - sha:.0f} |")
    print(f"\nkeyward ÷ hello-world, without SHA-256: {(keyward[1] - keyward[2]) / (hello[1] - hello[2]):.3f}")
    print("(the hello-world uses the system's allocator, keyward mimalloc; see bench/README.md)")
    if a.keep:
        print(f"store and profiles kept in {work} (callgrind_annotate <name>.callgrind.1)")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
