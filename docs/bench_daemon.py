#!/usr/bin/env python3
"""The daemon under load, and its edit-to-plan latency (numbers go to
docs/benchmarks.md).

    python3 docs/bench_daemon.py ORBITAL OHA BENCH_STATE JAFFLE_DIR

Needs `niquests` (HTTP/3) and `oha` built with `--features http3`. Starts
`orbital daemon` on a copy of JAFFLE_DIR and on a generated 10k-model
project, then for each: a build through the API (for a run id), three
rounds of `oha` with 200 connections x 50 requests (x 5 for the 10k
project's `GET /v1/project`, each of which compiles) on `GET /v1/project`
and `GET /v1/runs/{id}`, accepting gzip (requests/s, p50/p99, errors, the daemon's
resident memory after each round), and for the 10k project the time
`POST /v1/plan` takes after one model file changed (five edits, each
timed alone, on a warm connection).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import niquests


def start(orbital, project, data):
    child = subprocess.Popen(
        [orbital, "daemon", "--listen", "127.0.0.1:0", "--json", "--data-dir", data,
         "--project", project],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    bound = json.loads(child.stdout.readline())
    token = open(bound["token_file"]).read().strip()
    return child, bound, token


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def oha(binary, url, token, requests):
    out = subprocess.run(
        [binary, "--http-version", "3", "--insecure", "-c", "200", "-n", str(requests),
         "--no-tui", "--output-format", "json", "-H", f"Authorization: Bearer {token}",
         # As browsers, niquests and orbital's own client do.
         "-H", "Accept-Encoding: gzip", url],
        capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    summary = result["summary"]
    pct = result["latencyPercentiles"]
    codes = result.get("statusCodeDistribution", {})
    errors = sum(result.get("errorDistribution", {}).values()) + sum(
        n for code, n in codes.items() if code != "200")
    return summary["requestsPerSec"], pct["p50"] * 1000, pct["p99"] * 1000, errors


def session_for(bound, token):
    host, port = bound["listening"].rsplit(":", 1)
    session = niquests.Session(disable_http1=True, disable_http2=True)
    session.quic_cache_layer.add_domain(host, int(port))
    session.headers["Authorization"] = f"Bearer {token}"
    # Passed with each request: niquests's HTTP/3 path ignores Session.verify.
    verify = bound["certificate"]

    class Pinned:
        def get(self, url, **kw):
            return session.get(url, verify=verify, **kw)

        def post(self, url, **kw):
            return session.post(url, verify=verify, **kw)

    return Pinned(), f"https://{host}:{port}"


def build(session, base):
    run = session.post(base + "/v1/runs", json={"command": "build"}, timeout=3600).json()["run"]
    for _ in session.get(f"{base}/v1/runs/{run}/events", stream=True, timeout=3600).iter_lines():
        pass
    return run


def edit_to_plan(session, base, project, edits=5):
    """Edits one model `edits` times, each followed by a timed `POST /v1/plan`;
    the ms each took. The model is left as it was."""
    model = next(os.path.join(root, f) for root, _, files in
                 sorted(os.walk(os.path.join(project, "models"))) for f in sorted(files))
    comment = lambda text, _: text.rstrip() + f"\n-- edit {time.time()}\n"  # noqa: E731
    return timed_edits(session, base, model, comment, edits)


def timed_edits(session, base, path, change, edits):
    """`edits` edits of `path` by `change(original, i)`, each followed by a
    timed `POST /v1/plan`; the ms each took. The file is left as it was."""
    original = open(path).read()
    latencies = []
    try:
        for i in range(edits):
            with open(path, "w") as f:
                f.write(change(original, i))
            started = time.perf_counter()
            answer = session.post(base + "/v1/plan", json={}, timeout=600)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text[:300]
    finally:
        with open(path, "w") as f:
            f.write(original)
    return latencies


def main():
    orbital, oha_bin, bench_state, jaffle = sys.argv[1:5]
    scratch = tempfile.mkdtemp(prefix="orbital-daemon-bench-")
    projects = {"jaffle_shop": os.path.join(scratch, "jaffle")}
    shutil.copytree(jaffle, projects["jaffle_shop"], ignore=shutil.ignore_patterns("target"))
    projects["10k models"] = os.path.join(scratch, "p10k")
    subprocess.run([bench_state, "write", "10000", projects["10k models"]], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(projects["10k models"], "orbital.toml"), "w") as f:
        f.write('name = "synthetic"\n[targets.dev]\nurl = "sqlite://target/synthetic.db"\n'
                '[models]\nmaterialized = "table"\n')
    print("| project | endpoint | round | requests/s | p50 ms | p99 ms | errors | daemon RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    latencies = []
    for name, project in projects.items():
        child, bound, token = start(orbital, project, os.path.join(scratch, name + "-data"))
        try:
            session, base = session_for(bound, token)
            run = build(session, base)
            for endpoint in ("/v1/project", f"/v1/runs/{run}"):
                for round_ in range(1, 4):
                    # 200 x 50 requests; 200 x 5 where each one compiles
                    # 10k models (a round of 10,000 would take many minutes).
                    heavy = name == "10k models" and endpoint == "/v1/project"
                    rps, p50, p99, errors = oha(oha_bin, base + endpoint, token,
                                                1000 if heavy else 10000)
                    print(f"| {name} | GET {endpoint} | {round_} | {rps:,.0f} | {p50:.1f} | "
                          f"{p99:.1f} | {errors} | {rss_mib(child.pid):,.0f} |", flush=True)
            if name == "10k models":
                session.post(base + "/v1/plan", json={}, timeout=600)
                latencies += edit_to_plan(session, base, project)
        finally:
            child.terminate()
            child.wait()
    print()
    print("edit-to-plan, 10k models, ms: " + ", ".join(f"{ms:.0f}" for ms in latencies))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
