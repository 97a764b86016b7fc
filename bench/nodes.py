#!/usr/bin/env python3
"""Cross-node enforcement: two `keyward serve` processes on one PostgreSQL database and one
Redis. A change made through node A (a revocation, then a capability change) is timed until
node B enforces it. Standard library only; needs the release binary and `psql`.

    python3 bench/nodes.py postgres://postgres@127.0.0.1:5432/postgres redis://127.0.0.1:6379 [TRIALS]
"""
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from http.client import HTTPConnection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYWARD = os.path.join(ROOT, "target", "release", "keyward")


def main():
    pg, redis = sys.argv[1], sys.argv[2]
    trials = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    name = "kw_nodes_" + "".join(random.choice(string.ascii_lowercase) for _ in range(8))
    subprocess.run(["psql", pg, "-qc", f"CREATE DATABASE {name}"], check=True)
    db = pg.rsplit("/", 1)[0] + "/" + name
    work = tempfile.mkdtemp(prefix="keyward-nodes-")
    cli = lambda *a: json.loads(subprocess.run([KEYWARD, "--json", "--database-url", db, *a], cwd=work,
                                               capture_output=True, text=True, check=True).stdout)
    cli("org", "create", "--name", "Nodes", "--slug", "nodes")
    admin = cli("agent", "create", "--org", "nodes", "--name", "Admin",
                "--capabilities", "keys:write,keys:read,content:read")["first_key"]["secret"]
    # The admin key makes every request of the run: lift its limit out of the way.
    admin_id = cli("key", "list", "--org", "nodes")["data"][0]["id"]
    cli("key", "update", admin_id, "--rate-limit", "1000000/1m")
    env = {**os.environ, "KEYWARD_REDIS_URL": redis}
    nodes = []
    for _ in range(2):
        p = subprocess.Popen([KEYWARD, "serve", "--listen", "127.0.0.1:0", "--database-url", db], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        addr = p.stdout.readline().strip().removeprefix("Listening on http://")
        nodes.append((p, HTTPConnection(addr)))
    (_, a), (_, b) = nodes

    def call(conn, method, path, key, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)

    def until(conn, path, key, want):
        start = time.monotonic()
        while call(conn, "GET", path, key)[0] != want:
            if time.monotonic() - start > 1.0:
                raise SystemExit(f"node B did not answer {want} on {path} within 1 s")
        return (time.monotonic() - start) * 1000

    revoke, capability = [], []
    for i in range(trials):
        status, agent = call(a, "POST", "/v1/agents", admin, {"name": f"A{i}", "capabilities": ["keys:read"]})
        assert status == 201, agent
        key = agent["first_key"]
        assert call(b, "GET", "/v1/teams", key["secret"])[0] == 200
        call(a, "PATCH", f"/v1/agents/{agent['id']}", admin, {"capabilities": ["content:read"]})
        capability.append(until(b, "/v1/teams", key["secret"], 403))
        call(a, "POST", f"/v1/keys/{key['id']}/revoke", admin, {})
        revoke.append(until(b, "/v1/whoami", key["secret"], 401))
    for p, _ in nodes:
        p.terminate()
    subprocess.run(["psql", pg, "-qc", f"DROP DATABASE {name} WITH (FORCE)"], check=False)
    for label, xs in (("revocation", revoke), ("capability change", capability)):
        xs.sort()
        q = lambda f: xs[min(len(xs) - 1, int(len(xs) * f))]
        print(f"{label} through A enforced by B ({len(xs)} trials): min {xs[0]:.1f} ms, p50 {q(0.5):.1f}, "
              f"p90 {q(0.9):.1f}, p99 {q(0.99):.1f}, max {xs[-1]:.1f}")


if __name__ == "__main__":
    main()
