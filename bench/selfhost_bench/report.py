"""Figures from the samples: medians with their spread, paired ratios, targets; markdown, JSON and a chart."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from .measure import Samples


@dataclass(frozen=True)
class Figure:
    """The median of a series of runs with its spread."""

    median: float
    low: float
    high: float
    runs: int


@dataclass(frozen=True)
class Target:
    """One target of issue 7 and what was measured against it."""

    name: str
    goal: str
    measured: Figure
    met: bool


CONVERGE_LIMIT = 2.0  # the re-run with the most instances may take this much longer than with one


def figure(values: list[float]) -> Figure:
    """Median, minimum and maximum of values."""
    return Figure(statistics.median(values), min(values), max(values), len(values))


def ratio(samples: Samples, top: str, bottom: str) -> Figure:
    """top / bottom, run by run (both ran in the same round), summarised."""
    return figure([a / b for a, b in zip(samples[top], samples[bottom], strict=True)])


def figures(samples: Samples) -> dict[str, Figure]:
    """Every series, summarised."""
    return {key: figure(values) for key, values in sorted(samples.items()) if values}


def targets(samples: Samples, counts: list[int]) -> list[Target]:
    """The targets of issue 7 that these samples can answer (a phase that did not run answers none)."""
    out: list[Target] = []
    for name, goal, top, bottom in checks():
        if samples.get(top) and samples.get(bottom):
            measured = ratio(samples, top, bottom)
            limit = float(goal.split()[1])
            out.append(Target(name, goal, measured, measured.median <= limit if goal[0] == "<" else
                              measured.median >= limit))
    most = max(counts, default=1)
    if most > 1 and samples.get("converge.1.rerun.seconds") and samples.get(f"converge.{most}.rerun.seconds"):
        rerun = figure([statistics.median(samples[f"converge.{most}.rerun.seconds"])
                        / statistics.median(samples["converge.1.rerun.seconds"])])
        out.append(Target(f"converge: re-run with {most} / with 1 instance", "<= 2", rerun,
                          rerun.median <= CONVERGE_LIMIT))
    return out


def checks() -> list[tuple[str, str, str, str]]:
    """(name, goal, numerator series, denominator series) of every ratio with a target."""
    out: list[tuple[str, str, str, str]] = []
    for tool in ("restic", "borg"):
        out += [
            (f"{tool}: backup, ours / raw (warm)", "<= 1.05", f"warm.{tool}.ours.seconds", f"warm.{tool}.raw.seconds"),
            (f"{tool}: first backup, ours / raw (cold)", "<= 1.05", f"cold.{tool}.ours.seconds",
             f"cold.{tool}.raw.seconds"),
            (f"{tool}: backup, ours / raw in a transient unit (warm)", "<= 1.05", f"warm.{tool}.ours.seconds",
             f"warm.{tool}.raw_unit.seconds"),
            (f"{tool}: first backup, ours / raw in a transient unit (cold)", "<= 1.05", f"cold.{tool}.ours.seconds",
             f"cold.{tool}.raw_unit.seconds"),
            (f"{tool}: seed gzip request / our default, time (warm)", ">= 2", f"warm.{tool}.ours_gzip.seconds",
             f"warm.{tool}.ours.seconds"),
            (f"{tool}: seed gzip request / our default, time (cold)", ">= 2", f"cold.{tool}.ours_gzip.seconds",
             f"cold.{tool}.ours.seconds"),
            (f"{tool}: repository, our default / seed gzip", "<= 1", f"cold.{tool}.ours.repo_bytes",
             f"cold.{tool}.ours_gzip.repo_bytes"),
            (f"{tool}: restore, ours / raw", "<= 1.05", f"restore.{tool}.ours.seconds", f"restore.{tool}.raw.seconds"),
            (f"{tool}: drill / plain restore of the same snapshot (whole cluster)", "<= 1.3",
             f"drill.{tool}.drill.seconds", f"drill.{tool}.restore.seconds"),
        ]
        out += [(f"{key}: {workload} 1%, added / changed bytes", "<= 3", f"incremental.{workload}.{key}.added_bytes",
                 f"incremental.{workload}.changed_bytes")
                for workload in ("append", "clustered") for key in (f"{tool}.ours", f"{tool}.ours_gzip")]
    return out


def to_json(meta: dict[str, object], samples: Samples, counts: list[int],
            where: dict[str, dict[str, float]]) -> dict[str, object]:
    """Everything for latest.json: the machine, the raw samples, their summaries and the targets."""
    return {**meta, "samples": samples, "figures": {k: asdict(v) for k, v in figures(samples).items()},
            "targets": [asdict(t) for t in targets(samples, counts)], "converge_top_tasks": where}


def cell(fig: Figure, unit: str = "") -> str:
    """A figure as 'median (min-max)'."""
    scale, suffix = (1e6, " MB") if unit == "MB" else (1024.0, " MiB") if unit == "MiB" else (1.0, unit)
    return f"{fig.median / scale:.2f}{suffix} ({fig.low / scale:.2f}-{fig.high / scale:.2f})"


def unit_of(key: str) -> str:
    """The unit of a series by its name."""
    if key.endswith("seconds"):
        return " s"
    return "MiB" if key.endswith("peak_kib") else "MB"


def markdown(meta: dict[str, object], samples: Samples, counts: list[int],
             where: dict[str, dict[str, float]]) -> str:
    """latest.md: the machine, the targets and every figure."""
    lines = ["# selfhost.backup benchmark results", "", "Each cell: median (min-max) of n runs. See bench/README.md.",
             "", "## Machine and versions", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += ["", "## Targets", "", "| target | goal | measured | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {t.name} | {t.goal} | {cell(t.measured, 'x')} | {'yes' if t.met else '**no**'} |"
              for t in targets(samples, counts)]
    lines += ["", "## All figures", "", "| series | median (min-max) | n |", "| --- | --- | --- |"]
    lines += [f"| {key} | {cell(fig, unit_of(key))} | {fig.runs} |" for key, fig in figures(samples).items()]
    lines += chunker_lines(samples, str(meta.get("chunker_candidates", "")))
    lines += converge_lines(samples, counts)
    lines += ["", "## Where converge time goes (slowest tasks of the last run, seconds)", ""]
    for run, tasks in where.items():
        lines.append(f"- {run}: " + "; ".join(f"{name} {secs:.1f}" for name, secs in tasks.items()))
    return "\n".join(lines) + "\n"


def converge_lines(samples: Samples, counts: list[int]) -> list[str]:
    """The cost of one more instance: the slope between the smallest and the largest count."""
    if len(set(counts)) <= 1:
        return []
    low, high = min(counts), max(counts)
    out = ["", "## Converge cost per instance (medians)", ""]
    for run in ("first", "rerun"):
        small = statistics.median(samples[f"converge.{low}.{run}.seconds"])
        large = statistics.median(samples[f"converge.{high}.{run}.seconds"])
        out.append(f"- {run}: {(large - small) / (high - low):.2f} s per instance (from {low} to {high} instances)")
    return out


def chart(samples: Samples, path: Path) -> None:
    """latest.png: backup and restore wall times per tool (median, min-max bars) and incremental growth. Left as
    it was when matplotlib is not installed (BENCH_PYTHON without it): the tables do not need it."""
    try:
        import matplotlib as mpl  # pylint: disable=import-outside-toplevel
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    mpl.use("Agg")
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    bars_with_spread(left, samples, [
        f"{phase}.{key}.seconds" for phase in ("cold", "warm", "restore")
        for key in ("restic.raw", "restic.raw_unit", "restic.ours", "restic.ours_gzip", "restic.restore",
                    "restic.drill", "borg.raw", "borg.raw_unit", "borg.ours", "borg.ours_gzip", "borg.restore",
                    "borg.drill")
        if f"{phase}.{key}.seconds" in samples], "seconds (median, min-max)")
    bars_with_spread(right, samples, [
        key for key in samples if key.startswith("incremental.") and key.endswith("added_bytes")], "bytes",
        ratio_to_changed=True)
    if samples.get("warm.floor.seconds"):
        left.axhline(statistics.median(samples["warm.floor.seconds"]), color="grey", linestyle=":",
                     label="dump alone (warm)")
        left.legend()
    left.set_title("backup (cold, warm) and restore wall time")
    right.set_title("incremental growth: repository bytes added / bytes changed")
    right.axhline(3, color="red", linestyle=":", label="target for append and clustered (3x)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def bars_with_spread(axes: object, samples: Samples, keys: list[str], label: str,
                     ratio_to_changed: bool = False) -> None:
    """One bar per series with its min-max as an error bar."""
    figs = [figure(samples[k]) for k in keys]
    if ratio_to_changed:
        changed = [statistics.median(samples[f"incremental.{k.split('.')[1]}.changed_bytes"]) for k in keys]
        figs = [Figure(f.median / c, f.low / c, f.high / c, f.runs) for f, c in zip(figs, changed, strict=True)]
        label = "bytes added / bytes changed (median, min-max)"
    names = [k.replace(".seconds", "").replace(".added_bytes", "").replace("incremental.", "") for k in keys]
    errors = [[f.median - f.low for f in figs], [f.high - f.median for f in figs]]
    axes.bar(range(len(figs)), [f.median for f in figs], yerr=errors, capsize=3)  # type: ignore[attr-defined]
    axes.set_xticks(range(len(figs)), names, rotation=75, fontsize=7)  # type: ignore[attr-defined]
    axes.set_ylabel(label)  # type: ignore[attr-defined]


def chunker_lines(samples: Samples, candidates: str) -> list[str]:
    """The chunker phase: each candidate against the first (borg's default), ratios taken within each round."""
    labels = [params.replace(",", "_") for params in candidates.split()]
    labels = [label for label in labels if samples.get(f"chunker.borg.{label}.cold.seconds")]
    if not labels:
        return []
    base = f"chunker.borg.{labels[0]}"
    lines = ["", "## borg chunker params (raw borg, plain dump; ratios against the first candidate, per round)", "",
             "| chunker params | first backup | extract | repository | peak memory | append | clustered | scattered |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label in labels:
        key = f"chunker.borg.{label}"
        growth = [cell(ratio(samples, f"chunker.{w}.borg.{label}.added_bytes", f"chunker.{w}.changed_bytes"), "x")
                  for w in ("append", "clustered", "scattered")]
        lines.append(
            f"| {label.replace('_', ',')} | {cell(figure(samples[f'{key}.cold.seconds']), ' s')}, "
            f"{cell(ratio(samples, f'{key}.cold.seconds', f'{base}.cold.seconds'), 'x')} "
            f"| {cell(figure(samples[f'{key}.restore.seconds']), ' s')}, "
            f"{cell(ratio(samples, f'{key}.restore.seconds', f'{base}.restore.seconds'), 'x')} "
            f"| {cell(figure(samples[f'{key}.repo_bytes']), 'MB')} "
            f"| {cell(figure(samples[f'{key}.cold.peak_kib']), 'MiB')}, "
            f"{cell(ratio(samples, f'{key}.cold.peak_kib', f'{base}.cold.peak_kib'), 'x')} | " + " | ".join(growth) + " |")
    return lines
