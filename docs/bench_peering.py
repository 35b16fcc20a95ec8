#!/usr/bin/env python3
"""How long a daemon takes to plan a 10k-model project another daemon has
built (numbers go to docs/benchmarks.md).

    python3 docs/bench_peering.py ORBITAL BENCH_STATE

Needs `niquests` (HTTP/3). Writes a 10k-model project, builds it with
`orbital build` as daemon A's project, copies it as daemon B's (same SQLite
warehouse file, a state store of its own), and starts both daemons peered.
Then, three rounds, each with B's state store as it was before it ever
talked to A: B is started and its first `POST /v1/plan` is timed (the
whole request: B asks A for the 10k fingerprints' builds, checks them
against the warehouse's catalog, records them, and plans). B's store has
the project compiled already (`orbital compile`), so what is timed is the
exchange and the plan, not a cold compile; the same request with A
stopped (B plans to build everything) and the cold variant (B's store
empty: compile too) are timed alongside.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import niquests


def start(orbital, project, data, flags=()):
    child = subprocess.Popen(
        [orbital, "daemon", "--listen", "127.0.0.1:0", "--json", "--data-dir", data,
         "--project", project, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    bound = json.loads(child.stdout.readline())
    bound["token"] = open(bound["token_file"]).read().strip()
    return child, bound


def stop(child):
    child.terminate()
    child.wait()


def free_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_plan(bound):
    host, port = bound["listening"].rsplit(":", 1)
    session = niquests.Session(disable_http1=True, disable_http2=True)
    session.quic_cache_layer.add_domain(host, int(port))
    session.headers["Authorization"] = f"Bearer {bound['token']}"
    url = f"https://{host}:{port}"
    # A first request opens the connection; the plan is timed on it.
    session.get(url + "/v1/health", verify=bound["certificate"], timeout=60)
    started = time.perf_counter()
    answer = session.post(url + "/v1/plan", json={}, verify=bound["certificate"], timeout=600)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text[:300]
    actions = {}
    for node in answer.json()["nodes"]:
        actions[node["action"]] = actions.get(node["action"], 0) + 1
    return elapsed, actions


def main():
    orbital, bench_state = sys.argv[1:3]
    scratch = tempfile.mkdtemp(prefix="orbital-peering-bench-")
    a_dir, b_dir = os.path.join(scratch, "a"), os.path.join(scratch, "b")
    subprocess.run([bench_state, "write", "10000", a_dir], check=True, stdout=subprocess.DEVNULL)
    warehouse = os.path.join(a_dir, "target", "synthetic.db")
    with open(os.path.join(a_dir, "orbital.toml"), "w") as f:
        f.write(f'name = "synthetic"\n[targets.dev]\nurl = "sqlite://{warehouse}"\n'
                '[models]\nmaterialized = "table"\n')
    shutil.copytree(a_dir, b_dir)
    started = time.perf_counter()
    subprocess.run([orbital, "build"], cwd=a_dir, check=True, stdout=subprocess.DEVNULL)
    print(f"A built 10k models in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    b_store = os.path.join(b_dir, "target", "orbital", "state.redb")
    subprocess.run([orbital, "compile"], cwd=b_dir, check=True, stdout=subprocess.DEVNULL)
    compiled = b_store + ".compiled"
    shutil.copy(b_store, compiled)
    # First starts make the identities; then each lists the other.
    a_data, b_data = os.path.join(scratch, "a-data"), os.path.join(scratch, "b-data")
    ids = {}
    for name, project, data in (("a", a_dir, a_data), ("b", b_dir, b_data)):
        child, bound = start(orbital, project, data)
        ids[name] = bound["certificate_sha256"]
        stop(child)
    ports = {"a": free_port(), "b": free_port()}
    for me, other, data in (("a", "b", a_data), ("b", "a", b_data)):
        with open(os.path.join(data, "peers.toml"), "w") as f:
            f.write(f'[[peer]]\nname = "{other}"\naddress = "127.0.0.1:{ports[other]}"\n'
                    f'sha256 = "{ids[other]}"\n')
    listen = lambda name: ("--peer-listen", f"127.0.0.1:{ports[name]}")
    a, _ = start(orbital, a_dir, a_data, listen("a"))
    rows = []
    for round_ in range(1, 4):
        for variant in ("compiled, A up", "compiled, A down", "cold, A up"):
            if variant == "compiled, A down":
                stop(a)
            shutil.copy(compiled, b_store) if variant.startswith("compiled") else os.remove(b_store)
            b, bound = start(orbital, b_dir, b_data, listen("b"))
            elapsed, actions = timed_plan(bound)
            stop(b)
            if variant == "compiled, A down":
                a, _ = start(orbital, a_dir, a_data, listen("a"))
            rows.append((variant, round_, elapsed, actions))
    stop(a)
    print("| B's first `POST /v1/plan` | round | ms | plan |")
    print("|---|---|---|---|")
    for variant, round_, elapsed, actions in rows:
        plan = ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
        print(f"| {variant} | {round_} | {elapsed:.0f} | {plan} |")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
