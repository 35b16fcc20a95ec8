#!/usr/bin/env python3
"""dbt projects: cold `orbital compile` and warm no-change `orbital plan` on
a generated dbt-style project, against `dbt parse` on the same project in
the same run (numbers go to docs/benchmarks.md).

    python3 docs/bench_dbt.py ORBITAL DBT N [N ...]

The project: N models, each reading one or two earlier ones with ref(),
every tenth calling a macro of macros/, and a schema file per 100 models
with unique and not_null tests on each model's id. dbt reads the profile's
`dev` output (PostgreSQL; `dbt parse` connects to nothing); Orbital builds
into its `lite` output (SQLite). Each timing is a whole process, best of 3.

Cold runs each start in a fresh copy of the project with no `target/`, and
the copies are deleted only at the end: deleting `target/` right before a
run makes ext4 skip the just-freed inodes one by one for the next 60-300 s
(`recently_deleted` in its inode allocator), which tripled the time to
write 10k compiled files on this machine kind and is no user's cold start.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time


def generate(root, n):
    os.makedirs(os.path.join(root, "models"), exist_ok=True)
    os.makedirs(os.path.join(root, "macros"), exist_ok=True)
    with open(os.path.join(root, "dbt_project.yml"), "w") as f:
        f.write("name: bench\nprofile: bench\nconfig-version: 2\nversion: '1.0'\n"
                "models:\n  bench:\n    +materialized: view\n")
    with open(os.path.join(root, "profiles.yml"), "w") as f:
        f.write("bench:\n  target: dev\n  outputs:\n"
                "    dev: {type: postgres, host: localhost, port: 5432, user: u, password: p,"
                " dbname: d, schema: s, threads: 4}\n"
                "    lite: {type: sqlite, path: target/bench.db, threads: 4}\n")
    with open(os.path.join(root, "macros", "cents.sql"), "w") as f:
        f.write("{% macro cents(column) %}({{ column }} * 100){% endmacro %}\n")
    for i in range(n):
        folder = os.path.join(root, "models", f"part_{i // 100:03d}")
        os.makedirs(folder, exist_ok=True)
        if i == 0:
            body = "select 1 as id, 10 as amount, 'a' as name"
        else:
            one, two = f"m_{i // 2:05d}", f"m_{(i - 1) // 3:05d}"
            amount = "{{ cents('a.amount') }}" if i % 10 == 0 else "a.amount"
            body = (f"{{{{ config(tags=['t{i % 7}']) }}}}\n"
                    f"select a.id + {i} as id, {amount} as amount, b.name\n"
                    f"from {{{{ ref('{one}') }}}} as a\n"
                    f"join {{{{ ref('{two}') }}}} as b on a.id = b.id")
        with open(os.path.join(folder, f"m_{i:05d}.sql"), "w") as f:
            f.write(body + "\n")
    for part in range((n + 99) // 100):
        names = [f"m_{i:05d}" for i in range(part * 100, min(n, part * 100 + 100))]
        with open(os.path.join(root, "models", f"part_{part:03d}", "schema.yml"), "w") as f:
            f.write("version: 2\nmodels:\n")
            for name in names:
                f.write(f"  - name: {name}\n    columns:\n      - name: id\n"
                        "        data_tests: [unique, not_null]\n")


def timed(command, cwd, rounds=3):
    """Best of `rounds`; `cwd` is a folder, or a function giving a fresh one
    for each round."""
    best = None
    for _ in range(rounds):
        folder = cwd() if callable(cwd) else cwd
        started = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL,
                       env=dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false"))
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best


def main():
    orbital, dbt = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    print("| models | `dbt parse` cold | `orbital compile` cold | ratio | `orbital plan` warm |")
    print("|---|---|---|---|---|")
    for n in map(int, sys.argv[3:]):
        scratch = tempfile.mkdtemp(prefix=f"orbital-dbt-bench-{n}-")
        root = os.path.join(scratch, "project")
        generate(root, n)
        copies = iter(range(1_000_000))

        def fresh():
            copy = os.path.join(scratch, f"cold-{next(copies)}")
            shutil.copytree(root, copy)
            time.sleep(1)
            return copy

        parse = timed([dbt, "parse", "--profiles-dir", "."], fresh)
        compile_ = timed([orbital, "compile", "--target", "lite"], fresh)
        subprocess.run([orbital, "plan", "--target", "lite"], cwd=root, check=True,
                       stdout=subprocess.DEVNULL)
        plan = timed([orbital, "plan", "--target", "lite"], root)
        print(f"| {n:,} | {parse:.2f} s | {compile_:.2f} s | {parse / compile_:.0f}x | {plan:.2f} s |",
              flush=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
