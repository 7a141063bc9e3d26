#!/usr/bin/env python3
"""Run a benchmark command and report how busy the machine was with *other* work.

    python noise.py -- CMD [ARGS...]

Runs CMD (stdin closed, stderr passed through), reads its stdout and, when the
last stdout line is a JSON object, prints that object with a "noise" key added;
otherwise prints the output unchanged followed by one JSON line with "noise".

noise = {
  wall_s, own_cpu_s     (CPU of CMD and all the descendants it waited for),
  machine_busy_cpu_s    (all CPUs, from /proc/stat: user+nice+system+irq+softirq+steal),
  other_cpu_s           = machine_busy - own,
  other_cpu_share       = other_cpu_s / (wall_s * cpus)   (0 = quiet machine),
  loadavg_start, loadavg_end
}
A benchmark whose other_cpu_share is well above ~0.05 ran beside other work and
its absolute numbers are suspect; compare only runs with similar noise.
Caveats: kernel threads doing work on the benchmark's behalf (journal commits
for fsync-heavy SQLite, block I/O) count as "other"; so do descendants that
the benchmark never reaps (serve_mlflow.py makes itself a child subreaper and
reaps its server so that the server's CPU counts as its own).
Exit status: CMD's.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def machine_busy_s() -> float:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = vals[:7]
    steal = vals[7] if len(vals) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(cmd: list[str]) -> tuple[int, str, dict]:
    load0 = os.getloadavg()
    b0, c0, w0 = machine_busy_s(), children_cpu_s(), time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - w0
    busy = machine_busy_s() - b0
    own = children_cpu_s() - c0
    cpus = os.cpu_count() or 1
    other = max(0.0, busy - own)
    noise = {
        "wall_s": round(wall, 2),
        "own_cpu_s": round(own, 2),
        "machine_busy_cpu_s": round(busy, 2),
        "other_cpu_s": round(other, 2),
        "other_cpu_share": round(other / (wall * cpus), 3) if wall > 0 else None,
        "cpus": cpus,
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    return p.returncode, p.stdout, noise


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit(__doc__)
    rc, out, noise = measure(argv)
    lines = out.rstrip("\n").splitlines()
    merged = False
    if lines:
        try:
            obj = json.loads(lines[-1])
            if isinstance(obj, dict):
                obj["noise"] = noise
                lines[-1] = json.dumps(obj, default=str)
                merged = True
        except ValueError:
            pass
    if not merged:
        lines.append(json.dumps({"noise": noise}))
    sys.stdout.write("\n".join(lines) + "\n")
    sys.exit(rc)


if __name__ == "__main__":
    main()
