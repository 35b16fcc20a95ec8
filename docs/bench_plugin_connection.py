#!/usr/bin/env python3
"""A plugin's own connection against the host's built-in driver on the
same MariaDB (issue 21): whole `orbital` processes, the same project, one
target URL apart.

  tests/bin/with-mariadb python3 docs/bench_plugin_connection.py ORBITAL COMPONENT [ROUNDS] [MODELS]

- built-in: `mysql://...`, the host's sqlx driver;
- plugin: `mysql-wire://...`, the mysql-wire example adapter
  (COMPONENT, its .wasm) speaking MySQL's protocol over `wasi:sockets`,
  with adapter-mysql's dialect, so both send the same statements;
- replay: the statements the `table` materialization sends for each model
  (CREATE TABLE AS, then a count), through one `mariadb` client session:
  MariaDB's own share of the work.

`orbital run` of MODELS table models over a 10-row seed, with `threads = 1`
(per-task cost, one after another) and `threads = 4`; `orbital test` of
MODELS data tests, one over each model (a query each, the same statements
through both drivers: a build also takes a claim per relation, which
only the built-in driver does across processes); then `orbital seed` of
a 100k-row CSV. MariaDB's `Questions` counter says how many statements
each process sent. Each measurement has a fresh database and project state;
the order of built-in and plugin alternates between rounds. A first round
(not reported) warms the compiled-component cache and the server.
"""

import os
import subprocess
import sys
import tempfile
import time

from bench_util import timed_orbital, write_seed

ORBITAL = os.path.realpath(sys.argv[1])
COMPONENT = os.path.realpath(sys.argv[2])
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
MODELS = int(sys.argv[4]) if len(sys.argv) > 4 else 200
SEED_ROWS = 100_000
SERVER = os.environ["ORBITAL_TEST_MYSQL_URL"]  # mysql://user:pw@host:port
CREDENTIALS, ADDRESS = SERVER.removeprefix("mysql://").split("@", 1)
USER, PASSWORD = CREDENTIALS.split(":", 1)
HOST, PORT = ADDRESS.split(":")


def mariadb(sql, database=None):
    subprocess.run(
        ["mariadb", "-h", HOST, "-P", PORT, "-u", USER, f"-p{PASSWORD}", "-N", "-B"]
        + ([database] if database else []),
        input=sql,
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def questions():
    """Statements the server has run so far (MariaDB's `Questions`)."""
    out = subprocess.run(
        ["mariadb", "-h", HOST, "-P", PORT, "-u", USER, f"-p{PASSWORD}", "-N", "-B",
         "-e", "SHOW GLOBAL STATUS LIKE 'Questions'"],
        text=True, check=True, capture_output=True,
    ).stdout
    return int(out.split()[1])


def fresh_database(name):
    mariadb(f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name};")


def orbital(project, *args):
    return timed_orbital(ORBITAL, project, *args)


def project(folder, database, driver, threads):
    os.makedirs(os.path.join(folder, "seeds"), exist_ok=True)
    os.makedirs(os.path.join(folder, "models"), exist_ok=True)
    scheme = "mysql" if driver == "built-in" else "mysql-wire"
    plugins = "" if driver == "built-in" else f'[plugins]\ncomponents = ["{COMPONENT}"]\n'
    with open(os.path.join(folder, "orbital.toml"), "w") as f:
        f.write(
            f'name = "bench"\n[targets.dev]\nurl = "{scheme}://{CREDENTIALS}@{ADDRESS}/{database}"\n'
            f"threads = {threads}\n"
            '[seeds.src.column-types]\namount = "numeric"\nday = "date"\n' + plugins
        )


def models_run(work, tag, driver, threads):
    database = f"bench_{tag}"
    fresh_database(database)
    folder = os.path.join(work, tag)
    project(folder, database, driver, threads)
    write_seed(os.path.join(folder, "seeds", "src.csv"), 10)
    orbital(folder, "seed")
    for i in range(MODELS):
        with open(os.path.join(folder, "models", f"m{i:03d}.sql"), "w") as f:
            f.write(f"-- config: materialized = 'table'\nselect id, amount * {i} as v from src\n")
    before = questions()
    seconds, peak = orbital(folder, "run")
    # Less the one `questions()` itself sends.
    statements = questions() - before - 1
    # The same number of data tests: one query each, and no build claims,
    # so both drivers send the same statements.
    os.makedirs(os.path.join(folder, "tests"), exist_ok=True)
    for i in range(MODELS):
        with open(os.path.join(folder, "tests", f"t{i:03d}.sql"), "w") as f:
            f.write(f"select * from m{i:03d} where v < -{i}\n")
    before = questions()
    test_seconds, test_peak = orbital(folder, "test")
    test_statements = questions() - before - 1
    mariadb(f"DROP DATABASE {database}")
    return (seconds, peak, statements), (test_seconds, test_peak, test_statements)


def seed_run(work, tag, driver):
    database = f"bench_{tag}"
    fresh_database(database)
    folder = os.path.join(work, tag)
    project(folder, database, driver, 4)
    write_seed(os.path.join(folder, "seeds", "src.csv"), SEED_ROWS)
    seconds, peak = orbital(folder, "seed")
    mariadb(f"DROP DATABASE {database}")
    return seconds, peak, 0


def replay(tag):
    """The table materialization's statements for each model, one session."""
    database = f"bench_{tag}"
    fresh_database(database)
    mariadb(
        "CREATE TABLE src (id BIGINT, name TEXT, amount DECIMAL(38, 9), day DATE);"
        + "".join(
            f"INSERT INTO src VALUES ({i}, 'name {i}', {i}.5, '2024-01-0{1 + i % 9}');" for i in range(10)
        ),
        database,
    )
    statements = "".join(
        f"CREATE TABLE replay_{i} AS SELECT id, amount * {i} AS v FROM src; SELECT COUNT(*) FROM replay_{i};"
        for i in range(MODELS)
    )
    started = time.perf_counter()
    mariadb(statements, database)
    seconds = time.perf_counter() - started
    mariadb(f"DROP DATABASE {database}")
    return seconds


def main():
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(ROUNDS + 1):
            order = ["built-in", "plugin"] if round_ % 2 == 0 else ["plugin", "built-in"]
            row = {}
            for driver in order:
                short = "b" if driver == "built-in" else "p"
                for threads in (1, 4):
                    ran, tested = models_run(work, f"r{round_}{short}t{threads}", driver, threads)
                    row[(driver, f"run, threads {threads}")] = ran
                    row[(driver, f"test, threads {threads}")] = tested
                row[(driver, f"seed {SEED_ROWS // 1000}k rows")] = seed_run(work, f"s{round_}{short}", driver)
            row[("replay", "run, threads 1")] = (replay(f"x{round_}"), 0, 2 * MODELS)
            if round_ == 0:
                continue  # warm-up
            for key, value in row.items():
                results.setdefault(key, []).append(value)
    print(f"{MODELS} table models; {ROUNDS} rounds after a warm-up")
    print("| what | built-in (mysql://) | plugin (mysql-wire://) | plugin / built-in |")
    print("|---|---|---|---|")
    kinds = [f"{c}, threads {t}" for c in ("run", "test") for t in (1, 4)]
    kinds.append(f"seed {SEED_ROWS // 1000}k rows")
    for what in kinds:
        built_in = results[("built-in", what)]
        plugin = results[("plugin", what)]
        ratio = sum(p[0] for p in plugin) / sum(b[0] for b in built_in)
        fmt = lambda runs: " / ".join(f"{r[0] * 1000:,.0f} ms" for r in runs)
        print(f"| {what} | {fmt(built_in)} | {fmt(plugin)} | {ratio:.2f} |")
    for what in kinds:
        for driver in ("built-in", "plugin"):
            peaks = " / ".join(f"{r[1] / 1024:.0f}" for r in results[(driver, what)])
            print(f"peak MiB, {what}, {driver}: {peaks}")
    replays = " / ".join(f"{r[0] * 1000:,.0f} ms" for r in results[("replay", "run, threads 1")])
    print(f"mariadb replay of the {MODELS} models' statements: {replays}")
    for driver, what in [(d, w) for w in ("run", "test") for d in ("built-in", "plugin")] + [("replay", "run")]:
        runs = results[(driver, f"{what}, threads 1")]
        per_model = " / ".join(f"{r[0] / MODELS * 1000:.2f}" for r in runs)
        per_statement = " / ".join(f"{r[0] / r[2] * 1000:.3f}" for r in runs)
        sent = " / ".join(str(r[2]) for r in runs)
        print(
            f"{what}, {driver}, threads 1: {per_model} ms per model; {sent} statements; "
            f"{per_statement} ms per statement (whole process)"
        )


if __name__ == "__main__":
    main()
