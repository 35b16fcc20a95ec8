#!/usr/bin/env python3
"""One command, two orbital binaries, alternating runs: the whole process's
wall time, median (min-max). Each binary runs on its own copy of the
project, so neither invalidates the other's snapshot.

    R=10 python3 docs/bench_ab.py BASE_ORBITAL BASE_PROJECT NEW_ORBITAL NEW_PROJECT CMD [ARGS...]
"""
import os
import statistics
import subprocess
import sys
import time


def main():
    base, base_project, new, new_project, *args = sys.argv[1:]
    commands = {"base": [base, "--project", base_project],
                "new": [new, "--project", new_project]}
    times = {name: [] for name in commands}
    for round_ in range(int(os.environ.get("R", "10"))):
        order = list(commands) if round_ % 2 == 0 else list(commands)[::-1]
        for name in order:
            started = time.perf_counter()
            subprocess.run(commands[name] + args, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - started) * 1000)
    for name, ms in times.items():
        print(f"{name} {' '.join(args)}: median {statistics.median(ms):.0f} ms "
              f"({min(ms):.0f}-{max(ms):.0f})")


if __name__ == "__main__":
    main()
