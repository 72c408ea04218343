"""`python -m selfhost_bench`: run the benchmark rounds and write bench/results/latest.{md,json,png}.

Configured by the environment (bench/README.md): BENCH_SIZE_MB, BENCH_RUNS, BENCH_PHASES,
BENCH_CONVERGE_COUNTS, BENCH_CONVERGE_RUNS, BENCH_SEED.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import container, converge, datagen, measure, report
from .measure import Samples

RESULTS = Path(__file__).resolve().parent.parent / "results"
PHASES = "backup restore incremental converge"


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def setting(name: str, default: str) -> str:
    """A BENCH_* environment variable."""
    return os.environ.get(name, "").strip() or default


def first_line(argv: list[str]) -> str:
    """The first line of a command's output on this machine."""
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]


def machine(size_mb: int, rows: int) -> dict[str, object]:
    """The machine, the tool versions and the data set."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    inside = container.sh("cat /etc/debian_version; restic version | cut -d' ' -f1-2; borg --version; "
                          "psql --version; systemctl --version | head -n1").splitlines()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": f"{cpu}, {os.cpu_count()} cores",
            "memory": f"{int(mem) // 1024} MiB", "kernel": platform.release(), "container Debian": inside[0],
            "restic": inside[1], "borg": inside[2], "PostgreSQL": inside[3], "systemd": inside[4],
            "ansible-core": first_line(["ansible", "--version"]), "docker": first_line(["docker", "--version"]),
            "data set": f"{rows} rows, plain dump {measure.dump_bytes() / 1e6:.0f} MB (BENCH_SIZE_MB={size_mb})"}


def prefixed(prefix: str, samples: Samples) -> Samples:
    """samples with prefix. before every key."""
    return {f"{prefix}.{key}": values for key, values in samples.items()}


def write(meta: dict[str, object], samples: Samples, counts: list[int], where: dict[str, dict[str, float]]) -> None:
    """latest.json and latest.md now; latest.png when matplotlib is there."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report.to_json(meta, samples, counts, where), indent=1) + "\n")
    (RESULTS / "latest.md").write_text(report.markdown(meta, samples, counts, where))
    report.chart(samples, RESULTS / "latest.png")


def main() -> None:
    """Every phase of BENCH_PHASES in turn; the results are written again after each one."""
    size, runs, seed = int(setting("BENCH_SIZE_MB", "300")), int(setting("BENCH_RUNS", "3")), int(setting("BENCH_SEED", "7"))
    phases = setting("BENCH_PHASES", PHASES).split()
    counts = [int(c) for c in setting("BENCH_CONVERGE_COUNTS", "1 10 50").split()]
    log(f"generating about {size} MB of rows")
    meta = machine(size, datagen.create(size, seed))
    meta.update(runs=runs, phases=" ".join(phases), converge_counts=" ".join(map(str, counts)))
    samples: Samples = {}
    where: dict[str, dict[str, float]] = {}
    if "backup" in phases:
        samples |= prefixed("cold", measure.backups(runs, True, log))
        samples |= prefixed("warm", measure.backups(runs, False, log))
        write(meta, samples, [], where)
    if "restore" in phases:
        samples |= prefixed("restore", measure.restores(runs, log))
        write(meta, samples, [], where)
    if "incremental" in phases:
        samples |= prefixed("incremental", measure.incremental(runs, 0.01, seed, log))
        write(meta, samples, [], where)
    if "converge" in phases:
        workdir = RESULTS / "tmp"
        workdir.mkdir(parents=True, exist_ok=True)
        meta["converge_providers"] = setting("BENCH_CONVERGE_PROVIDERS", "restic borg")
        for done, count in enumerate(counts, start=1):
            scaled, top = converge.scaling([count], int(setting("BENCH_CONVERGE_RUNS", str(runs))), workdir, log)
            samples |= scaled
            where |= top
            write(meta, samples, counts[:done], where)
    else:
        write(meta, samples, [], where)
    log(f"results in {RESULTS}/latest.md, latest.json and latest.png")


if __name__ == "__main__":
    main()
