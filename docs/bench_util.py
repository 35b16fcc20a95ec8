"""What the benchmark scripts share: timing a whole orbital process, and
the seed CSV they load (id, name, amount, day)."""

import subprocess
import time


def timed_orbital(binary, project, *args):
    """Wall seconds and peak KiB of one `binary` process in `project`."""
    started = time.perf_counter()
    timed = subprocess.run(
        ["/usr/bin/time", "-f", "%M", binary, *args],
        cwd=project,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(timed.stderr.strip().splitlines()[-1])


def write_seed(path, rows):
    with open(path, "w") as f:
        f.write("id,name,amount,day\n")
        for i in range(rows):
            f.write(f"{i},name {i % 1000},{i % 10000}.{i % 100:02d},2024-{1 + i % 12:02d}-{1 + i % 28:02d}\n")
