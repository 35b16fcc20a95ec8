#!/usr/bin/env python3
"""Edit-to-plan and `GET /v1/project` latency on a generated 10k-model
project, for two orbital binaries in alternating rounds (numbers go to
docs/benchmarks.md).

    python3 docs/bench_edit_plan.py BASE_ORBITAL NEW_ORBITAL BENCH_STATE [EDITS]

Each round starts a daemon of one binary on the project, then times five
`GET /v1/project` on the unchanged project, and EDITS (default 5) edits of
each kind below, each followed by a `POST /v1/plan` of the whole project:

- comment: a comment appended to the first model file (its canonical SQL,
  so the plan, stays the same);
- leaf: a literal changed in a model nothing reads (1 node modified);
- root: a literal changed in the model most of the project reads (nearly
  every node changes).

Two numbers per request: the round trip as niquests (HTTP/3) sees it, and
the daemon's own time from the request's arrival to its last byte sent
(from its debug log). Needs `niquests` (see bench_daemon.py).
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_daemon  # noqa: E402

SENT = re.compile(r"sent path=/v1/plan elapsed=([0-9.]+)(ms|µs|s)")


def daemon_times(log_path, after):
    """The daemon's times (ms) for the plans logged after byte `after`."""
    with open(log_path, encoding="utf-8", errors="replace") as log:
        log.seek(after)
        text = re.sub(r"\x1b\[[0-9;]*m", "", log.read())
    scale = {"ms": 1.0, "µs": 0.001, "s": 1000.0}
    return [float(n) * scale[unit] for n, unit in SENT.findall(text)]


def edit_kinds(orbital, project):
    """The model files to edit for `leaf` and `root`, from the listing."""
    listed = json.loads(subprocess.run(
        [orbital, "--project", project, "ls", "--json"], check=True,
        capture_output=True, text=True).stdout)
    nodes = listed["nodes"] if isinstance(listed, dict) else listed
    readers = {n["name"]: 0 for n in nodes}
    for node in nodes:
        for upstream in node.get("depends_on", []):
            readers[upstream] = readers.get(upstream, 0) + 1
    models = [n for n in nodes if n["kind"] == "model"]
    leaf = next(n for n in models if readers[n["name"]] == 0)
    root = max(models, key=lambda n: readers[n["name"]])
    return os.path.join(project, leaf["path"]), os.path.join(project, root["path"])


def literal(original, i):
    changed = re.sub(r"is not null", f"> {i + 1}", original, count=1)
    assert changed != original, "no literal to change"
    return changed


def measure(orbital, project, data, files, edits):
    log_path = data + ".log"
    os.makedirs(data, exist_ok=True)
    env = dict(os.environ, ORBITAL_LOG="orbital_daemon=debug")
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [orbital, "daemon", "--listen", "127.0.0.1:0", "--json", "--data-dir", data,
             "--project", project],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        bound = json.loads(child.stdout.readline())
        token = open(bound["token_file"]).read().strip()
        session, base = bench_daemon.session_for(bound, token)
        session.post(base + "/v1/plan", json={}, timeout=600)
        listing = []
        for _ in range(5):
            started = time.perf_counter()
            assert session.get(base + "/v1/project", timeout=600).status_code == 200
            listing.append((time.perf_counter() - started) * 1000)
        leaf, root = files
        comment = lambda text, i: text.rstrip() + f"\n-- edit {time.time()}\n"  # noqa: E731
        kinds = {}
        for kind, path, change in (("comment", leaf, comment), ("leaf", leaf, literal),
                                   ("root", root, literal)):
            mark = os.path.getsize(log_path)
            trips = bench_daemon.timed_edits(session, base, path, change, edits)
            # Each kind's file is restored after it: one plan puts the
            # daemon back on the unchanged project before the next kind.
            session.post(base + "/v1/plan", json={}, timeout=600)
            kinds[kind] = (trips, daemon_times(log_path, mark)[:edits])
        return listing, kinds
    finally:
        child.terminate()
        child.wait()


def main():
    binaries, bench_state = sys.argv[1:3], sys.argv[3]
    edits = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    scratch = tempfile.mkdtemp(prefix="orbital-edit-plan-")
    project = os.path.join(scratch, "p10k")
    subprocess.run([bench_state, "write", "10000", project], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(project, "orbital.toml"), "w") as f:
        f.write('name = "synthetic"\n[targets.dev]\nurl = "sqlite://target/synthetic.db"\n'
                '[models]\nmaterialized = "table"\n')
    subprocess.run([binaries[0], "--project", project, "build"], check=True,
                   stdout=subprocess.DEVNULL)
    files = edit_kinds(binaries[0], project)
    print("Medians (min-max) in ms: round trip with niquests / the daemon's own time.")
    print()
    print("| binary | round | GET /v1/project | plan after a comment | after a leaf change "
          "| after a root change |")
    print("|---|---|---|---|---|---|")

    def cell(xs):
        return f"{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})" if xs else "-"

    for round_ in range(2):
        for binary in binaries:
            data = os.path.join(scratch, f"data-{round_}-{os.path.basename(binary)}")
            listing, kinds = measure(binary, project, data, files, edits)
            row = [cell(listing)] + [f"{cell(t)} / {cell(d)}" for t, d in kinds.values()]
            print(f"| {binary} | {round_ + 1} | " + " | ".join(row) + " |", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
