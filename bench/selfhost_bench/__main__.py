"""`python -m selfhost_bench`: run the benchmark rounds and write bench/results/latest.{md,json,png}.

Configured by the environment (bench/README.md): BENCH_SIZE_MB, BENCH_RUNS, BENCH_PHASES,
BENCH_CONVERGE_COUNTS, BENCH_CONVERGE_RUNS, BENCH_CONVERGE_PROVIDERS, BENCH_SEED, BENCH_MERGE,
BENCH_BORG_CHUNKER_CANDIDATES; the fleet phase (bench/results/fleet.{md,json}): BENCH_FLEET_COUNTS,
BENCH_FLEET_PROVIDER, BENCH_FLEET_DB_MB.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import container, converge, datagen, fleet, fleet_logic, measure, report
from .commands import CHUNKER_CANDIDATES
from .measure import Samples

RESULTS = Path(__file__).resolve().parent.parent / "results"
PHASES = "backup restore drill incremental converge"


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def setting(name: str, default: str) -> str:
    """A BENCH_* environment variable."""
    return os.environ.get(name, "").strip() or default


def first_line(argv: list[str]) -> str:
    """The first line of a command's output on this machine."""
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]


def collection_version() -> str:
    """The commit of this checkout, and whether roles/ or plugins/ differ from it (what site.yml converged)."""
    top = str(RESULTS.parent.parent)
    head = first_line(["git", "-C", top, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--", "roles", "plugins"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"{head}" + (" with uncommitted changes in roles/ or plugins/" if dirty else "")


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
            "collection": collection_version(),
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


PHASE_PREFIXES = {"backup": ("cold.", "warm."), "restore": ("restore.",), "drill": ("drill.",),
                  "incremental": ("incremental.",), "chunker": ("chunker.",), "converge": ("converge.",)}


def previous(phases: list[str], counts: list[int]) -> tuple[Samples, dict[str, dict[str, float]], list[int]]:
    """BENCH_MERGE=1: the samples of latest.json, without those about to be measured again (a converge phase
    replaces only the counts it runs)."""
    old = json.loads((RESULTS / "latest.json").read_text(encoding="utf-8"))
    drop = tuple(prefix for phase in phases if phase != "converge" for prefix in PHASE_PREFIXES[phase])
    if "converge" in phases:
        drop += tuple(f"converge.{count}." for count in counts)
    samples = {key: values for key, values in old["samples"].items() if not key.startswith(drop)}
    kept = sorted({int(key.split(".")[1]) for key in samples if key.startswith("converge.")})
    where = {run: tasks for run, tasks in old.get("converge_top_tasks", {}).items()
             if int(run.split("-")[1]) in kept}
    return samples, where, kept


def merged_note(phases: list[str], counts_done: list[int], runs: int) -> dict[str, object]:
    """What a merged result says about where each phase's samples come from."""
    old = json.loads((RESULTS / "latest.json").read_text(encoding="utf-8"))
    earlier = old.get("merged") or f"{old.get('phases')} at {old.get('date')} (runs={old.get('runs')})"
    done = " ".join(dict.fromkeys([*str(old.get("phases", "")).split(), *phases]))
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    note: dict[str, object] = {"phases": done, "merged": f"{earlier}; then {' '.join(phases)} at {now} (runs={runs})"}
    if counts_done and "converge" not in phases:
        note.update(converge_counts=old.get("converge_counts"), converge_providers=old.get("converge_providers"))
    return note


def fleet_phase(runs: int) -> None:
    """The fleet phase: its own containers (not selfhost-backup-bench), its own results (fleet.md, fleet.json)."""
    counts = [int(c) for c in setting("BENCH_FLEET_COUNTS", "1 4 8").split()]
    provider, size = setting("BENCH_FLEET_PROVIDER", "restic"), int(setting("BENCH_FLEET_DB_MB", "20"))
    workdir = RESULTS / "tmp"
    workdir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
        "kernel": platform.release(), "collection": collection_version(),
        "ansible-core": first_line(["ansible", "--version"]), "docker": first_line(["docker", "--version"]),
        "fleet": f"1 server (Debian 13) + up to {max(counts)} clients (Debian 13 and 12 alternating), {provider}, "
                 f"SQLite {size} MB of new rows per client per backup round, {runs} backup rounds"}
    log(f"fleet: counts {counts}, {provider}, {size} MB per client")

    kept: tuple[Samples, dict[str, dict[str, float]]] = ({}, {})
    every = counts
    if setting("BENCH_FLEET_MERGE", "0") == "1":
        old = json.loads((RESULTS / "fleet.json").read_text(encoding="utf-8"))
        kept = fleet_logic.kept(old, counts)
        every = sorted({*counts, *(int(key.split(".")[2]) for key in kept[0] if key.startswith("fleet.converge."))})
        loads = old["samples"]["fleet.load1"]
        meta["merged"] = (f"converges of {sorted(set(every) - set(counts))} "
                          + ("and the backups " if any(k.startswith("fleet.backup.") for k in kept[0]) else "")
                          + f"from the run of {old.get('date')} (load {min(loads):.1f}-{max(loads):.1f}); "
                          + (f"earlier: {old['merged']}" if old.get("merged") else ""))

    def save(samples: Samples, where: dict[str, dict[str, float]]) -> None:
        meta["date, end"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_fleet(meta, samples, [c for c in every if f"fleet.converge.{c}.first.seconds" in samples], where)

    meta["fleet"] = str(meta["fleet"]).replace(f"up to {max(counts)} clients", f"up to {max(every)} clients")
    try:
        fleet.measure(counts, runs, provider, size, workdir, log, save, kept)
    finally:
        if setting("BENCH_FLEET_KEEP", "0") != "1":
            fleet.destroy()
    log(f"results in {RESULTS}/fleet.md and fleet.json")


def write_fleet(meta: dict[str, object], samples: Samples, counts: list[int],
                where: dict[str, dict[str, float]]) -> None:
    """fleet.json (meta, samples, the slowest tasks, the model's answer) and fleet.md from it."""
    measured = fleet_logic.costs(samples, counts)
    document = {**meta, "counts": counts, "samples": samples, "converge_top_tasks": where,
                "plan": None if measured is None else {
                    k: v for k, v in vars(fleet_logic.plan(measured)).items() if k != "lines"}}
    (RESULTS / "fleet.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    (RESULTS / "fleet.md").write_text(fleet_logic.markdown(meta, samples, counts, where), encoding="utf-8")


def main() -> None:
    """Every phase of BENCH_PHASES in turn; the results are written again after each one. The fleet phase, last,
    writes its own."""
    size, runs = int(setting("BENCH_SIZE_MB", "300")), int(setting("BENCH_RUNS", "3"))
    seed = int(setting("BENCH_SEED", "7"))
    phases = setting("BENCH_PHASES", PHASES).split()
    if "fleet" in phases:
        phases.remove("fleet")
        if phases:
            others(size, runs, seed, phases)
        fleet_phase(runs)
    else:
        others(size, runs, seed, phases)


def others(size: int, runs: int, seed: int, phases: list[str]) -> None:
    """The phases on selfhost-backup-bench: latest.{md,json,png}."""
    counts = [int(c) for c in setting("BENCH_CONVERGE_COUNTS", "1 10 50").split()]
    log(f"generating about {size} MB of rows")
    meta = machine(size, datagen.create(size, seed))
    meta.update(runs=runs, phases=" ".join(phases))
    merge = setting("BENCH_MERGE", "0") == "1"
    samples, where, counts_done = previous(phases, counts) if merge else ({}, {}, [])
    if merge:
        meta.update(merged_note(phases, counts_done, runs))
    if "backup" in phases:
        samples |= prefixed("cold", measure.backups(runs, True, log))
        samples |= prefixed("warm", measure.backups(runs, False, log))
        write(meta, samples, counts_done, where)
    if "restore" in phases:
        samples |= prefixed("restore", measure.restores(runs, log))
        write(meta, samples, counts_done, where)
    if "drill" in phases:
        samples |= prefixed("drill", measure.drills(runs, log))
        write(meta, samples, counts_done, where)
    if "incremental" in phases:
        samples |= prefixed("incremental", measure.incremental(runs, 0.01, seed, log))
        write(meta, samples, counts_done, where)
    if "chunker" in phases:
        candidates = setting("BENCH_BORG_CHUNKER_CANDIDATES", CHUNKER_CANDIDATES)
        meta["chunker_candidates"] = candidates
        samples |= prefixed("chunker", measure.chunker(runs, 0.01, seed, candidates, log))
        write(meta, samples, counts_done, where)
    if "converge" in phases:
        workdir = RESULTS / "tmp"
        workdir.mkdir(parents=True, exist_ok=True)
        meta["converge_providers"] = setting("BENCH_CONVERGE_PROVIDERS", "restic borg")
        for count in counts:
            scaled, top = converge.scaling([count], int(setting("BENCH_CONVERGE_RUNS", str(runs))), workdir, log)
            samples |= scaled
            where |= top
            counts_done = sorted({*counts_done, count})
            meta["converge_counts"] = " ".join(map(str, counts_done))
            write(meta, samples, counts_done, where)
    else:
        write(meta, samples, counts_done, where)
    log(f"results in {RESULTS}/latest.md, latest.json and latest.png")


if __name__ == "__main__":
    main()
