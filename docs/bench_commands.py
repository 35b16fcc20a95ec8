#!/usr/bin/env python3
"""Whole-process benchmarks of the commands users run, for two builds of
orbital side by side in alternating rounds (numbers go to
docs/benchmarks.md).

    python3 docs/bench_commands.py BASE_ORBITAL NEW_ORBITAL BENCH_STATE SIZES [BUILD_SIZES]

BENCH_STATE is a built `bench_state` example (it writes the synthetic
projects). SIZES (a comma list of model counts) get `compile`, `ls` and
`plan`, cold and warm; BUILD_SIZES (default: none) also get a first
`build` on SQLite (timed against replaying the same compiled SQL with the
`sqlite3` shell, in the same round), then warm `run`, `test`, `plan` and
`runs`.

Cold: no project state (target/ removed), the compiled-plugin cache kept;
"cold, empty plugin cache" also empties that. Warm: the same command again
on the unchanged project. Each number is the whole process's wall time,
best of BEST_OF, with its peak resident memory (the child's maxrss).
ROUNDS rounds alternate the two builds.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BEST_OF = int(os.environ.get("BENCH_BEST_OF", "3"))


def run(args, env=None, cwd=None):
    """Runs `args`; returns (seconds, peak MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit(f"{args}: exit {code}: {stderr[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def write_project(bench_state, models, into):
    subprocess.run([bench_state, "write", str(models), into], check=True,
                   stdout=subprocess.DEVNULL)
    # Tables: SQLite expands a view's whole stack of views each time it
    # reads one, which a deep synthetic graph makes impractical to build.
    with open(os.path.join(into, "orbital.toml"), "w") as f:
        f.write('name = "synthetic"\n[targets.dev]\nurl = "sqlite://target/synthetic.db"\n'
                '[models]\nmaterialized = "table"\n')
    # A checkout's files are older than the snapshot's racy window.
    hour_ago = time.time() - 3600
    for root, _, files in os.walk(into):
        for name in files:
            os.utime(os.path.join(root, name), (hour_ago, hour_ago))
    time.sleep(2.2)


def best(measure):
    results = [measure() for _ in range(BEST_OF)]
    return min(r[0] for r in results), max(r[1] for r in results)


def clean(project):
    shutil.rmtree(os.path.join(project, "target"), ignore_errors=True)


COPIES = iter(range(1_000_000))


def cold(orbital, project, command, env):
    """In a fresh copy of `project` each time, kept until the scratch folder
    goes: deleting `target/` right before a run makes ext4 skip the
    just-freed inodes one by one for the next 60-300 s (`recently_deleted`
    in its inode allocator), which tripled the time to write 10k compiled
    files here and is no user's cold start."""
    def once():
        copy = f"{project}-cold-{next(COPIES)}"
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("target"))
        time.sleep(1)
        return run([orbital, *command, "--project", copy], env)
    return best(once)


def warm(orbital, project, command, env):
    run([orbital, *command, "--project", project], env)
    return best(lambda: run([orbital, *command, "--project", project], env))


def replay(orbital, project, env, scratch):
    """The same compiled SQL run by the sqlite3 shell: seeds imported from
    their CSVs, then one CREATE TABLE ... AS per model in build order."""
    import json
    listed = subprocess.run([orbital, "ls", "--json", "--project", project],
                            capture_output=True, text=True, env=env, check=True)
    nodes = json.loads(listed.stdout)["nodes"]
    subprocess.run([orbital, "compile", "--project", project], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    script = os.path.join(scratch, "replay.sql")
    with open(script, "w") as out:
        for node in nodes:
            if node["kind"] == "seed":
                out.write(f'.import --csv {os.path.join(project, node["path"])} {node["name"]}\n')
        out.write("BEGIN;\n")
        for node in nodes:
            if node["kind"] == "model":
                sql_path = os.path.join(project, "target/compiled", node["path"])
                with open(sql_path) as f:
                    out.write(f'CREATE TABLE "{node["name"]}" AS\n{f.read().rstrip()};\n')
        out.write("COMMIT;\n")

    def once():
        db = os.path.join(scratch, "replay.db")
        for stale in (db + "-wal", db + "-shm"):
            if os.path.exists(stale):
                os.remove(stale)
        if os.path.exists(db):
            os.remove(db)
        started = time.perf_counter()
        with open(script) as stdin:
            child = subprocess.Popen(["sqlite3", db], stdin=stdin,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("sqlite3 replay failed")
        return elapsed, usage.ru_maxrss / 1024
    return once()


def fmt(result):
    seconds, mib = result
    return f"{seconds * 1000:,.0f} ms, {mib:,.0f} MiB"


def main():
    base, new, bench_state, sizes = sys.argv[1:5]
    build_sizes = [int(s) for s in sys.argv[5].split(",")] if len(sys.argv) > 5 else []
    sizes = [int(s) for s in sizes.split(",")]
    scratch = tempfile.mkdtemp(prefix="orbital-bench-")
    cache = os.path.join(scratch, "plugin-cache")
    env = dict(os.environ, ORBITAL_CACHE_DIR=cache)
    rows = {}

    def record(name, build, result):
        rows.setdefault(name, {}).setdefault(build, []).append(result)

    projects = {}
    for models in sorted(set(sizes) | set(build_sizes)):
        projects[models] = os.path.join(scratch, f"p{models}")
        write_project(bench_state, models, projects[models])
    # Each build compiles its plugins into the cache once, before timing.
    for orbital in (base, new):
        run([orbital, "ls", "--project", projects[min(projects)]], env)
    for round_ in range(ROUNDS):
        order = [("base", base), ("new", new)] if round_ % 2 == 0 else [("new", new), ("base", base)]
        for build, orbital in order:
            for models in sizes:
                p = projects[models]
                for command in (["compile"], ["ls"], ["plan", "--json"]):
                    name = command[0]
                    record(f"{name} {models:,} cold", build, cold(orbital, p, command, env))
                    record(f"{name} {models:,} warm", build, warm(orbital, p, command, env))
                shutil.rmtree(cache, ignore_errors=True)
                clean(p)
                record(f"ls {models:,} cold, empty plugin cache", build,
                       run([orbital, "ls", "--project", p], env))
                for refill in (base, new):
                    run([refill, "ls", "--project", p], env)
            for models in build_sizes:
                p = projects[models]
                clean(p)
                record(f"first build {models:,}", build,
                       run([orbital, "build", "--project", p], env))
                for command in (["run"], ["test"], ["plan", "--json"], ["runs"]):
                    record(f"{command[0]} {models:,} warm, built", build,
                           warm(orbital, p, command, env))
                record(f"sqlite3 replay {models:,}", build, replay(orbital, p, env, scratch))
            print(f"round {round_ + 1} {build} done", file=sys.stderr, flush=True)
    print("| what | new | base |")
    print("|---|---|---|")
    for name, by_build in rows.items():
        cells = [" / ".join(fmt(r) for r in by_build.get(b, [])) for b in ("new", "base")]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
