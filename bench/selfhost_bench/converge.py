"""Converge scaling: playbooks/converge.yml with N instances of each provider, timed from the controller."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from . import container
from .measure import Log, Samples

BENCH = Path(__file__).resolve().parent.parent


def playbook(count: int, timings: Path) -> float:
    """Run converge.yml with bench_count=count for the providers of BENCH_CONVERGE_PROVIDERS; return its
    wall time, with per-task times in timings."""
    providers = json.dumps((os.environ.get("BENCH_CONVERGE_PROVIDERS", "").strip() or "restic borg").split())
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(BENCH / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="bench_timings", BENCH_TIMINGS_FILE=str(timings))
    argv = ["ansible-playbook", "-i", str(BENCH / "inventory.yml"), str(BENCH / "playbooks" / "converge.yml"),
            "-e", f"bench_count={count}", "-e", f'{{"bench_providers": {providers}}}']
    start = time.monotonic()
    with open(timings.with_suffix(".log"), "w", encoding="utf-8") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.monotonic() - start


def top_tasks(timings: Path, limit: int = 6) -> dict[str, float]:
    """The tasks that took longest in one run."""
    totals: dict[str, float] = json.loads(timings.read_text(encoding="utf-8"))
    return dict(sorted(totals.items(), key=lambda item: -item[1])[:limit])


def scaling(counts: list[int], runs: int, workdir: Path, log: Log) -> tuple[Samples, dict[str, dict[str, float]]]:
    """For each count: remove every instance, converge (first), then converge again runs times (re-run)."""
    samples: Samples = defaultdict(list)
    where: dict[str, dict[str, float]] = {}
    for count in counts:
        playbook(0, workdir / "remove.json")
        # The repositories go on purpose: so does what the roles remember of them (a repository this host opened
        # before and that is missing now would stop the converge, as it should on a real host).
        container.sh("rm -rf /srv/bench/converge /var/lib/selfhost-backup/restic-repositories.json "
                     "/var/lib/selfhost-backup/borg-repositories.json")
        first = playbook(count, workdir / f"first-{count}.json")
        samples[f"converge.{count}.first.seconds"].append(first)
        log(f"converge {count}: first {first:.1f} s")
        for turn in range(runs):
            rerun = playbook(count, workdir / f"rerun-{count}.json")
            samples[f"converge.{count}.rerun.seconds"].append(rerun)
            log(f"converge {count}: re-run {turn + 1}/{runs} {rerun:.1f} s")
        where[f"first-{count}"] = top_tasks(workdir / f"first-{count}.json")
        where[f"rerun-{count}"] = top_tasks(workdir / f"rerun-{count}.json")
    return samples, where
