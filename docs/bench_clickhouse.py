#!/usr/bin/env python3
"""ClickHouse through the adapter's own connection (issue 21), whole
`orbital` processes against the same work sent straight to ClickHouse's
HTTP interface from one keep-alive Python connection.

  tests/bin/with-clickhouse python3 docs/bench_clickhouse.py ORBITAL [ROUNDS] [SEED_ROWS]

- seed: `orbital seed` of one CSV of SEED_ROWS rows (id, name, amount,
  day), against ClickHouse's own CSV ingestion of the same file
  (`INSERT INTO ... FORMAT CSV`, one request);
- models: `orbital run` of 100 table models over a 10-row seed with
  `threads = 1`, each round in a fresh database and project state,
  against a replay of the statements the `table` materialization sends
  for each model (CREATE TABLE AS, then a count) on one connection.

Each round uses a fresh database; peak memory is the orbital process's.
"""

import base64
import http.client
import os
import sys
import tempfile
import time
import urllib.parse

from bench_util import timed_orbital, write_seed

ORBITAL = os.path.realpath(sys.argv[1])
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
SEED_ROWS = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
SERVER = os.environ["ORBITAL_TEST_CLICKHOUSE_URL"]
CREDENTIALS, ADDRESS = SERVER.removeprefix("clickhouse://").split("@", 1)
HOST, PORT = ADDRESS.split(":")
AUTH = "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()
MODELS = 100


class ClickHouse:
    """One keep-alive HTTP connection."""

    def __init__(self, database="default"):
        self.connection = http.client.HTTPConnection(HOST, int(PORT))
        self.database = database

    def send(self, sql, body=None):
        query = urllib.parse.urlencode(
            {"database": self.database, "join_default_strictness": "ALL"}
            | ({"query": sql} if body is not None else {})
        )
        self.connection.request(
            "POST",
            "/?" + query,
            body=body if body is not None else sql.encode(),
            headers={"authorization": AUTH},
        )
        response = self.connection.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"{sql[:80]}: {text[:300]!r}")
        return text


def fresh_database(name):
    admin = ClickHouse()
    admin.send(f"DROP DATABASE IF EXISTS {name}")
    admin.send(f"CREATE DATABASE {name}")


def orbital(project, *args):
    return timed_orbital(ORBITAL, project, *args)


def project(folder, database, threads=4):
    os.makedirs(os.path.join(folder, "seeds"), exist_ok=True)
    os.makedirs(os.path.join(folder, "models"), exist_ok=True)
    with open(os.path.join(folder, "orbital.toml"), "w") as f:
        f.write(
            f'name = "bench"\n[targets.dev]\nurl = "{SERVER}/{database}"\nthreads = {threads}\n'
            '[seeds.rows.column-types]\namount = "numeric"\nday = "date"\n'
        )


def seed_round(work, round_):
    database = f"bench_seed_{round_}"
    fresh_database(database)
    folder = os.path.join(work, f"seed{round_}")
    project(folder, database)
    write_seed(os.path.join(folder, "seeds", "rows.csv"), SEED_ROWS)
    seconds, peak = orbital(folder, "seed")
    # The same file through ClickHouse's own CSV reader.
    native = ClickHouse(database)
    native.send(
        "CREATE TABLE native (id Nullable(Int64), name Nullable(String), "
        "amount Nullable(Decimal(38, 9)), day Nullable(Date)) ENGINE = MergeTree ORDER BY tuple()"
    )
    with open(os.path.join(folder, "seeds", "rows.csv"), "rb") as f:
        data = f.read().split(b"\n", 1)[1]
    started = time.perf_counter()
    native.send("INSERT INTO native FORMAT CSV", body=data)
    native_seconds = time.perf_counter() - started
    count = ClickHouse(database).send(f"SELECT count() FROM rows").strip()
    assert int(count) == SEED_ROWS, count
    ClickHouse().send(f"DROP DATABASE {database}")
    return seconds, peak, native_seconds


def models_round(work, round_):
    database = f"bench_models_{round_}"
    fresh_database(database)
    folder = os.path.join(work, f"models{round_}")
    # One at a time, as the replay sends them: the difference is what
    # each task costs beyond ClickHouse's own work.
    project(folder, database, threads=1)
    write_seed(os.path.join(folder, "seeds", "rows.csv"), 10)
    orbital(folder, "seed")
    for i in range(MODELS):
        with open(os.path.join(folder, "models", f"m{i:03d}.sql"), "w") as f:
            f.write(f"-- config: materialized = 'table'\nselect id, amount * {i} as v from rows\n")
    seconds, peak = orbital(folder, "run")
    # The table materialization's statements for each model, replayed.
    replay = ClickHouse(database)
    started = time.perf_counter()
    for i in range(MODELS):
        replay.send(
            f'CREATE TABLE "replay_{i}" ENGINE = MergeTree ORDER BY tuple() AS '
            f"SELECT id, amount * {i} AS v FROM rows"
        )
        replay.send(f'SELECT COUNT(*) FROM "replay_{i}" FORMAT TabSeparatedWithNamesAndTypes')
    replay_seconds = time.perf_counter() - started
    ClickHouse().send(f"DROP DATABASE {database}")
    return seconds, peak, replay_seconds


def main():
    version = ClickHouse().send("SELECT version()").decode().strip()
    print(f"ClickHouse {version}, {ROUNDS} rounds, {SEED_ROWS} seed rows, {MODELS} models")
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(ROUNDS):
            seconds, peak, native = seed_round(work, round_)
            print(
                f"seed   round {round_}: orbital {seconds:.2f} s ({SEED_ROWS / seconds:,.0f} rows/s, "
                f"{peak / 1024:.0f} MiB); ClickHouse CSV {native:.2f} s ({SEED_ROWS / native:,.0f} rows/s)"
            )
        for round_ in range(ROUNDS):
            seconds, peak, replay = models_round(work, round_)
            print(
                f"models round {round_}: orbital run {seconds * 1000:.0f} ms ({peak / 1024:.0f} MiB); "
                f"replay {replay * 1000:.0f} ms; {(seconds - replay) * 1000 / MODELS:.1f} ms per model more"
            )


if __name__ == "__main__":
    main()
