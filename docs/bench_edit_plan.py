#!/usr/bin/env python3
"""Edit-to-plan and `GET /v1/project` latency on a generated 10k-model
project, for two orbital binaries in alternating rounds (numbers go to
docs/benchmarks.md).

    python3 docs/bench_edit_plan.py BASE_ORBITAL NEW_ORBITAL BENCH_STATE

Each round starts a daemon of one binary on the project, then times five
`GET /v1/project` on the unchanged project and five edits of one model,
each followed by a `POST /v1/plan`. Needs `niquests` (see bench_daemon.py).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_daemon  # noqa: E402


def measure(orbital, project, data):
    child, bound, token = bench_daemon.start(orbital, project, data)
    try:
        session, base = bench_daemon.session_for(bound, token)
        session.post(base + "/v1/plan", json={}, timeout=600)
        listing = []
        for _ in range(5):
            started = time.perf_counter()
            assert session.get(base + "/v1/project", timeout=600).status_code == 200
            listing.append((time.perf_counter() - started) * 1000)
        plans = bench_daemon.edit_to_plan(session, base, project)
        return listing, plans
    finally:
        child.terminate()
        child.wait()


def main():
    binaries, bench_state = sys.argv[1:3], sys.argv[3]
    scratch = tempfile.mkdtemp(prefix="orbital-edit-plan-")
    project = os.path.join(scratch, "p10k")
    subprocess.run([bench_state, "write", "10000", project], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(project, "orbital.toml"), "w") as f:
        f.write('name = "synthetic"\n[targets.dev]\nurl = "sqlite://target/synthetic.db"\n'
                '[models]\nmaterialized = "table"\n')
    subprocess.run([binaries[0], "--project", project, "build"], check=True,
                   stdout=subprocess.DEVNULL)
    print("| binary | round | GET /v1/project | POST /v1/plan after an edit |")
    print("|---|---|---|---|")
    for round_ in range(2):
        for binary in binaries:
            data = os.path.join(scratch, f"data-{round_}-{os.path.basename(binary)}")
            listing, plans = measure(binary, project, data)
            ms = lambda xs: ", ".join(f"{x:.0f}" for x in xs)  # noqa: E731
            print(f"| {binary} | {round_ + 1} | {ms(listing)} | {ms(plans)} |", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
