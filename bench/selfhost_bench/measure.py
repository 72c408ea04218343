"""The measurement rounds. Within a round every subject runs once; the order rotates from round to round,
so ours and the baseline share the machine's noise and the ratios of their medians hold."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

from . import container, datagen
from .commands import (DUMP, Subject, backup_subjects, chunker_subjects, drill_subjects, drill_unit,
                       incremental_subjects, restore_subjects)

Samples = dict[str, list[float]]
Log = Callable[[str], None]


def rotated(items: list[Subject], turn: int) -> list[Subject]:
    """items, starting at turn (modulo its length)."""
    shift = turn % len(items)
    return items[shift:] + items[:shift]


def repo_bytes(subject: Subject) -> int:
    """The size of a subject's repository on disk."""
    return int(container.sh(f"du -sb {subject.repository}").split()[0]) if subject.repository else 0


def dump_bytes() -> int:
    """The size of the plain dump of the cluster."""
    return int(container.sh(f"runuser -u postgres -- {DUMP} | wc -c"))


def record(samples: Samples, key: str, timed: container.Timed) -> None:
    """Store a run's wall time and, when restic or borg ran, its peak memory."""
    samples[f"{key}.seconds"].append(timed.seconds)
    if timed.peak_kib:
        samples[f"{key}.peak_kib"].append(float(timed.peak_kib))
    if timed.unit_peak_kib:
        samples[f"{key}.unit_peak_kib"].append(float(timed.unit_peak_kib))


def backups(runs: int, cold: bool, log: Log) -> Samples:
    """Time each backup subject runs times; cold: into an emptied repository, then record its size."""
    samples: Samples = defaultdict(list)
    for turn in range(runs):
        for subject in rotated(backup_subjects(), turn):
            if cold:
                container.sh(subject.reset)
            timed = container.timed(subject.backup)
            record(samples, subject.key, timed)
            if cold and subject.repository:
                samples[f"{subject.key}.repo_bytes"].append(float(repo_bytes(subject)))
            log(f"{'cold' if cold else 'warm'} backup {turn + 1}/{runs} {subject.key}: {timed.seconds:.2f} s")
    return samples


def restores(runs: int, log: Log) -> Samples:
    """Time each restore subject runs times (each restores the whole cluster from its latest backup)."""
    samples: Samples = defaultdict(list)
    for turn in range(runs):
        for subject in rotated(restore_subjects(), turn):
            timed = container.timed(subject.restore)
            record(samples, subject.key, timed)
            log(f"restore {turn + 1}/{runs} {subject.key}: {timed.seconds:.2f} s")
    return samples


def drills(runs: int, log: Log) -> Samples:
    """Per tool, one backup of instance plain, then rounds of its plain restore and its drill (the drill unit),
    both of that snapshot; the drill's whole unit's memory is sampled too."""
    samples: Samples = defaultdict(list)
    subjects = drill_subjects()
    for subject in subjects[::2]:
        container.timed(subject.backup)
    for turn in range(runs):
        for subject in rotated(subjects, turn):
            unit = drill_unit(subject.tool) if subject.key.endswith(".drill") else ""
            timed = container.timed(subject.restore, unit)
            record(samples, subject.key, timed)
            log(f"drill phase {turn + 1}/{runs} {subject.key}: {timed.seconds:.2f} s")
    return samples


def incremental(runs: int, fraction: float, seed: int, log: Log) -> Samples:
    """For each workload: change the data, back up with every unit, and record the bytes each repository
    grew by, next to the bytes of the changed rows' new text."""
    samples: Samples = defaultdict(list)
    rng = random.Random(seed)
    subjects = incremental_subjects()
    for subject in subjects:  # the newest backup of each unit holds the data as it is now
        container.timed(subject.backup)
    for turn in range(runs):
        for workload in ("append", "clustered", "scattered"):
            before = {s.key: repo_bytes(s) for s in subjects}
            change = datagen.apply(workload, fraction, rng)
            samples[f"{workload}.changed_bytes"].append(float(change.changed_bytes))
            for subject in rotated(subjects, turn):
                container.timed(subject.backup)
                added = repo_bytes(subject) - before[subject.key]
                samples[f"{workload}.{subject.key}.added_bytes"].append(float(added))
            log(f"incremental {turn + 1}/{runs} {workload}: {change.rows} rows, {change.changed_bytes} bytes")
    return samples


def chunker(runs: int, fraction: float, seed: int, candidates: str, log: Log) -> Samples:
    """borg's chunker params side by side, every candidate once a round in rotating order: a first backup
    (time, peak memory, repository size), the extraction of the dump, then each workload and a backup of
    every candidate after it (time, the bytes its repository grew by)."""
    samples: Samples = defaultdict(list)
    rng = random.Random(seed)
    subjects = chunker_subjects(candidates)
    for turn in range(runs):
        for subject in rotated(subjects, turn):
            container.sh(subject.reset)
            timed = container.timed(subject.backup)
            record(samples, f"{subject.key}.cold", timed)
            samples[f"{subject.key}.repo_bytes"].append(float(repo_bytes(subject)))
            log(f"chunker {turn + 1}/{runs} {subject.key}: first backup {timed.seconds:.2f} s")
        for subject in rotated(subjects, turn):
            timed = container.timed(subject.restore)
            record(samples, f"{subject.key}.restore", timed)
            log(f"chunker {turn + 1}/{runs} {subject.key}: extract {timed.seconds:.2f} s")
        for workload in ("append", "clustered", "scattered"):
            before = {s.key: repo_bytes(s) for s in subjects}
            change = datagen.apply(workload, fraction, rng)
            samples[f"{workload}.changed_bytes"].append(float(change.changed_bytes))
            for subject in rotated(subjects, turn):
                timed = container.timed(subject.backup)
                record(samples, f"{subject.key}.{workload}", timed)
                samples[f"{workload}.{subject.key}.added_bytes"].append(float(repo_bytes(subject) - before[subject.key]))
            log(f"chunker {turn + 1}/{runs} {workload}: {change.rows} rows, {change.changed_bytes} bytes")
    return samples
