#!/usr/bin/env python3
"""A run on a target only a peer reaches, against the same run by the peer
itself (numbers go to docs/benchmarks.md).

    tests/bin/with-postgres python3 docs/bench_remote_target.py ORBITAL N

Two daemons on one PostgreSQL database: B holds the target's URL; A's copy
of the project points at a port nothing listens on, and A's peers.toml says
B reaches the target. Each round times, whole, a full-refresh `build` of N
models (half tables, half views reading them, one incremental) started on
B for itself, then on A (its tasks built by B, the rest of its statements
sent to B), from POST /v1/runs to the last event. Needs niquests (see
bench_daemon.py) and ORBITAL_TEST_POSTGRES_URL (tests/bin/with-postgres).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_daemon  # noqa: E402


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project(root, url, n):
    os.makedirs(os.path.join(root, "models"))
    with open(os.path.join(root, "orbital.toml"), "w") as f:
        f.write(f'name = "remote"\n[targets.dev]\nurl = "{url}"\n')
    for i in range(n):
        if i % 2 == 0:
            body = f"-- config: materialized = 'table'\nselect {i} as n, g as x from generate_series(1, 1000) g"
        else:
            body = f"select n, x * 2 as y from m{i - 1:04d}"
        with open(os.path.join(root, "models", f"m{i:04d}.sql"), "w") as f:
            f.write(body + "\n")
    with open(os.path.join(root, "models", "events.sql"), "w") as f:
        f.write("-- config: materialized = 'incremental', unique_key = 'n'\n"
                "select n, x from m0000 where if_incremental(n > (select max(n) from this))\n")


def run(session, base):
    started = time.perf_counter()
    answer = session.post(base + "/v1/runs", json={"command": "build", "full_refresh": True},
                          timeout=3600).json()
    status = None
    for line in session.get(f"{base}/v1/runs/{answer['run']}/events", stream=True,
                            timeout=3600).iter_lines():
        if line.startswith(b"data:") and b'"status"' in line:
            status = json.loads(line[5:]).get("status", status)
    return time.perf_counter() - started, status


def main():
    orbital, n = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    server = os.environ["ORBITAL_TEST_POSTGRES_URL"]
    admin = server.rsplit("/", 1)[0]
    database = f"orbital_remote_bench_{os.getpid()}"
    subprocess.run(["psql", "-q", server, "-c", f"CREATE DATABASE {database}"], check=True)
    scratch = tempfile.mkdtemp(prefix="orbital-remote-bench-")
    try:
        project(os.path.join(scratch, "b"), f"{admin}/{database}", n)
        project(os.path.join(scratch, "a"), "postgres://nobody@127.0.0.1:1/unreachable", n)
        data = {name: os.path.join(scratch, f"data-{name}") for name in "ab"}
        # First starts make the identities the peers pin.
        prints = {}
        for name in "ab":
            child, bound, _ = bench_daemon.start(orbital, os.path.join(scratch, name), data[name])
            prints[name] = bound["certificate_sha256"]
            child.terminate()
            child.wait()
        ports = {name: free_udp_port() for name in "ab"}
        entry = lambda name: (f'[[peer]]\nname = "{name}"\naddress = "127.0.0.1:{ports[name]}"\n'  # noqa: E731
                              f'sha256 = "{prints[name]}"\ntasks = {os.environ.get("TASKS", "8")}\n')
        with open(os.path.join(data["a"], "peers.toml"), "w") as f:
            f.write(entry("b") + 'reaches = ["dev"]\n')
        with open(os.path.join(data["b"], "peers.toml"), "w") as f:
            f.write(entry("a"))
        children, sessions = [], {}
        for name in "ab":
            child = subprocess.Popen(
                [orbital, "daemon", "--listen", "127.0.0.1:0", "--json", "--data-dir", data[name],
                 "--project", os.path.join(scratch, name), "--peer-listen",
                 f"127.0.0.1:{ports[name]}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            bound = json.loads(child.stdout.readline())
            token = open(bound["token_file"]).read().strip()
            children.append(child)
            sessions[name] = bench_daemon.session_for(bound, token)
        print(f"| round | B, its own target | A, through B |")
        print("|---|---|---|")
        for round_ in range(3):
            times = []
            for name in "ba":
                took, status = run(*sessions[name])
                assert status == "succeeded", (name, status)
                times.append(took)
            print(f"| {round_ + 1} | {times[0]:.2f} s | {times[1]:.2f} s |", flush=True)
        for child in children:
            child.terminate()
            child.wait()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run(["psql", "-q", server, "-c",
                        f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False)


if __name__ == "__main__":
    main()
