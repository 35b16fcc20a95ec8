#!/usr/bin/env python3
"""Whole-process timing of `orbital run` and `orbital plan` on unchanged,
built projects, for two builds of orbital side by side, in alternating
rounds (numbers go to docs/benchmarks.md).

    python3 docs/bench_runs.py BASE_ORBITAL NEW_ORBITAL BENCH_STATE SIZES [POSTGRES_URL]

BENCH_STATE is a built `bench_state` example (it writes the synthetic
projects); SIZES is a comma list of model counts. With POSTGRES_URL (a
server whose user may create databases), each size also runs on a fresh
PostgreSQL database per build. BENCH_BACKENDS=postgres (or sqlite) runs
one backend only.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROUNDS = 3
BEST_OF = 5


def sh(args, **kw):
    done = subprocess.run(args, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def project(bench_state, models, url, into):
    sh([bench_state, "write", str(models), into])
    # Tables: SQLite expands a view's whole stack of views each time it
    # reads one, which a deep synthetic graph makes impractical to build.
    with open(os.path.join(into, "orbital.toml"), "w") as f:
        f.write(
            f'name = "synthetic"\n[targets.dev]\nurl = "{url}"\n'
            '[models]\nmaterialized = "table"\n'
        )
    # A checkout's files are older than the snapshot's racy window.
    hour_ago = time.time() - 3600
    for root, _, files in os.walk(into):
        for name in files:
            os.utime(os.path.join(root, name), (hour_ago, hour_ago))
    time.sleep(2.2)


def touch_schema(url, folder):
    """Creates and drops a table, so that the warehouse's schema cookie
    moves and the next command reads the whole catalog."""
    sql = "CREATE TABLE bench_touch (x integer); DROP TABLE bench_touch;"
    if url.startswith("sqlite://"):
        import sqlite3
        path = os.path.join(folder, url[len("sqlite://"):])
        connection = sqlite3.connect(path)
        connection.executescript(sql)
        connection.close()
    else:
        sh(["psql", "-X", "-q", url, "-c", sql])


def best(orbital, args, folder, before=None):
    times = []
    for _ in range(BEST_OF):
        if before:
            before()
        started = time.perf_counter()
        done = sh([orbital, *args, "--json", "--project", folder])
        times.append(time.perf_counter() - started)
        assert '"success"' not in done.stdout, "something was rebuilt"
    return min(times) * 1000


def database(server, name):
    base, _ = server.rsplit("/", 1)
    sh(["psql", "-X", "-q", server, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    sh(["psql", "-X", "-q", server, "-c", f"CREATE DATABASE {name}"])
    return f"{base}/{name}"


def main():
    base, new, bench_state, sizes = sys.argv[1:5]
    server = sys.argv[5] if len(sys.argv) > 5 else None
    builds = {"base": base, "new": new}
    for models in [int(s) for s in sizes.split(",")]:
        backends = ["sqlite"] + (["postgres"] if server else [])
        only = os.environ.get("BENCH_BACKENDS")
        if only:
            backends = [b for b in backends if b in only.split(",")]
        for backend in backends:
            work = tempfile.mkdtemp()
            folders = {}
            for label, orbital in builds.items():
                folder = os.path.join(work, label)
                os.makedirs(folder)
                url = (
                    "sqlite://target/synthetic.db"
                    if backend == "sqlite"
                    else database(server, f"bench_{label}_{models}")
                )
                project(bench_state, models, url, folder)
                started = time.perf_counter()
                sh([orbital, "build", "--project", folder])
                print(f"{backend} {models}: first build with {label}: {time.perf_counter() - started:.1f} s", flush=True)
                folders[label] = (folder, url)
            # `plan (catalog)`: a plan after DDL elsewhere in the warehouse,
            # so that it reads the whole catalog (a plan saves no cookie).
            for what in ("run", "plan", "plan (catalog)"):
                for round in range(1, ROUNDS + 1):
                    cells = []
                    for label, orbital in builds.items():
                        folder, url = folders[label]
                        before = (lambda u=url, f=folder: touch_schema(u, f)) if "catalog" in what else None
                        ms = best(orbital, [what.split()[0]], folder, before)
                        cells.append(f"{label} {ms:.0f} ms")
                    print(f"{backend} {models} {what} round {round}: " + ", ".join(cells), flush=True)
            shutil.rmtree(work)


main()
