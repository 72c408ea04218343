"""The fleet phase's pure parts: names, inventory, docker arguments, the play recap, the server's load from cgroup
samples, and the paper model for many hosts. Nothing here runs a command (tests/unit/bench tests it)."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass

PREFIX = "bench-fleet"
SERVER = f"{PREFIX}-server"
NETWORK = f"{PREFIX}-net"
IMAGE = "selfhost-backup/debian-systemd:{suite}"
DEFAULT_SPREAD = 3600  # schedule.randomized_delay_sec of the restic and borg roles


def client_names(count: int) -> list[str]:
    """The clients' container (and inventory) names: bench-fleet-c1 ... bench-fleet-c<count>."""
    return [f"{PREFIX}-c{number}" for number in range(1, count + 1)]


def suite_of(name: str) -> str:
    """Debian 13 for the server and the odd clients, Debian 12 for the even ones: a mixed fleet, as in the
    fleet scenario."""
    if name == SERVER:
        return "trixie"
    return "trixie" if int(name.rsplit("c", 1)[1]) % 2 else "bookworm"


def order(counts: list[int]) -> list[int]:
    """The order the counts run in: the smallest and the largest first (the ratio that has a goal, and the
    backups, which run on the largest), then the others ascending."""
    unique = sorted(set(counts))
    return unique[:1] + unique[-1:] + unique[1:-1] if len(unique) > 1 else unique


def kept(old: dict[str, object], counts: list[int]) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """BENCH_FLEET_MERGE=1: the samples and slowest tasks of an earlier fleet.json that this run does not measure
    again: the converges of the other counts, the load readings (this run's are added), and the backups unless
    this run reaches the earlier run's largest count (the backups run on the largest)."""
    samples = old.get("samples") or {}
    where = old.get("converge_top_tasks") or {}
    if not isinstance(samples, dict) or not isinstance(where, dict):
        raise ValueError("not a fleet.json: samples and converge_top_tasks must be objects")
    redone = tuple(f"fleet.converge.{count}." for count in counts)
    converged = {int(key.split(".")[2]) for key in samples if key.startswith("fleet.converge.")}
    backups_again = max(counts, default=0) >= max(converged, default=0)
    keep = {key: list(values) for key, values in samples.items()
            if (key.startswith("fleet.converge.") and not key.startswith(redone))
            or key in ("fleet.load1", "fleet.other_containers")
            or (key.startswith("fleet.backup.") and not backups_again)}
    kept_counts = {key.split(".")[2] for key in keep if key.startswith("fleet.converge.")}
    return keep, {run: dict(tasks) for run, tasks in where.items() if run.split("-")[1] in kept_counts}


def inventory(count: int, provider: str) -> dict[str, object]:
    """The inventory of one server and count clients, in the groups extensions/molecule/fleet/converge.yml
    plays on: every client an SQLite client of provider (restic or borg), reached with docker exec."""
    if provider not in ("restic", "borg"):
        raise ValueError(f"provider must be restic or borg, not {provider!r}")
    docker = {"ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3"}
    clients = {name: {} for name in client_names(count)}
    return {"all": {"vars": docker, "children": {
        "backup_servers": {"hosts": {SERVER: {}}},
        "clients": {"hosts": clients},
        "sqlite_clients": {"hosts": dict(clients)},
        f"{provider}_clients": {"hosts": dict(clients)},
        "debian13": {"hosts": {name: {} for name in [SERVER, *clients] if suite_of(name) == "trixie"}},
        "debian12": {"hosts": {name: {} for name in clients if suite_of(name) == "bookworm"}},
    }}}


def docker_run_argv(name: str, apt_cache: str) -> list[str]:
    """`docker run` of one fleet container: systemd as PID 1 with the settings of the molecule scenarios, on the
    fleet's own network, its downloaded packages kept in apt_cache/<name> between runs."""
    host = name.removeprefix(f"{PREFIX}-")
    return ["docker", "run", "--detach", "--name", name, "--hostname", host, "--network", NETWORK,
            "--cap-add", "SYS_ADMIN", "--cgroupns", "host", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--volume", f"{apt_cache}/{name}:/var/cache/apt/archives:rw",
            IMAGE.format(suite=suite_of(name)), "/lib/systemd/systemd"]


_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def recap(log: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ansible-playbook log: per host, its ok, changed, unreachable and failed counts."""
    return {host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
            for host, ok, changed, unreachable, failed in _RECAP.findall(log)}


def span(runs: list[tuple[float, float]]) -> float:
    """The wall time of jobs that ran at the same time: from the first start to the last end."""
    if not runs:
        raise ValueError("no runs")
    return max(run[1] for run in runs) - min(run[0] for run in runs)


def peak_cores(samples: list[tuple[float, int]], window: float = 1.0) -> float:
    """The highest CPU use, in cores, over any stretch of at least window seconds between two samples of
    (monotonic seconds, cumulative CPU nanoseconds)."""
    best = 0.0
    for i, (start, used) in enumerate(samples):
        for later, used_later in samples[i + 1:]:
            if later - start >= window:
                best = max(best, (used_later - used) / 1e9 / (later - start))
                break
    return best


@dataclass(frozen=True)
class Costs:
    """The measured per-host costs the model starts from (medians)."""

    converge_seconds: dict[int, float]  # forks (= clients in the run) -> wall time of a converge of that many
    backup_seconds: float  # one client's backup, alone
    concurrent_seconds: float  # concurrency clients backing up at once, first start to last end
    concurrency: int
    bytes_per_backup: float  # what one backup adds to the server's repositories
    server_cpu_seconds: float  # CPU the server container used for the concurrency backups together
    controller_cpu_per_host: float = 0.0  # ansible's CPU on the controller per host of a first converge


@dataclass(frozen=True)
class Plan:
    """One answer of the model for a number of hosts and a nightly window."""

    hosts: int
    window_hours: float
    forks: int
    converge_hours: float
    servers: int
    hosts_per_server: int
    spread_seconds: int
    expected_concurrent: float
    concurrent_999: int  # the 99.9th percentile of the jobs running at once on a server
    server_cpu_share: float
    megabytes_per_second: float
    lines: list[str]


def plan(costs: Costs, hosts: int = 1000, window_hours: float = 6.0, server_cores: int = 2,
         max_concurrent: int | None = None, controller_cores: int = 2) -> Plan:
    """How many servers and what spread keep hosts' nightly backups inside window_hours, and how long a converge
    of all of them takes at the largest measured forks; lines: the arithmetic, for the README and fleet.md.

    A server takes at most max_concurrent jobs at once (default: the measured concurrency, the only one known to
    work); jobs start uniformly over a RandomizedDelaySec spread, so a server of n hosts sees on average
    n * backup / spread jobs at once. The spread is the window less one backup, the servers as many as keep that
    average at or under max_concurrent and the server's CPU under half its cores."""
    limit = max_concurrent or costs.concurrency
    window = window_hours * 3600
    forks = max(costs.converge_seconds)
    per_batch = costs.converge_seconds[forks]
    converge = math.ceil(hosts / forks) * per_batch
    # The concurrent run is the pessimistic backup time: the clients shared these cores with the server.
    backup = max(costs.backup_seconds, costs.concurrent_seconds)
    spread = int(window - backup)
    by_concurrency = math.floor(limit * spread / backup)
    cpu_per_backup = costs.server_cpu_seconds / costs.concurrency
    by_cpu = math.floor(0.5 * server_cores * window / cpu_per_backup) if cpu_per_backup > 0 else by_concurrency
    per_server = max(1, min(by_concurrency, by_cpu))
    servers = math.ceil(hosts / per_server)
    on_each = math.ceil(hosts / servers)
    concurrent = on_each * backup / spread
    cpu_share = on_each * cpu_per_backup / (server_cores * window)
    rate = on_each * costs.bytes_per_backup / window / 1e6
    default = hosts * backup / DEFAULT_SPREAD
    lines = [
        f"- converge: {forks} hosts at forks {forks} took {per_batch:.0f} s, so {hosts} hosts take "
        f"ceil({hosts} / {forks}) x {per_batch:.0f} s = {converge:.0f} s = {converge / 3600:.1f} h",
        f"- one backup: {costs.backup_seconds:.1f} s alone, {costs.concurrent_seconds:.1f} s for {costs.concurrency} "
        f"at once; the model takes the worse, {backup:.1f} s, and {costs.bytes_per_backup / 1e6:.1f} MB stored",
        f"- spread: RandomizedDelaySec = window - one backup = {window:.0f} - {backup:.0f} = {spread} s",
        f"- per server by concurrency: at most {limit} jobs at once on average: floor({limit} x {spread} / "
        f"{backup:.1f}) = {by_concurrency} hosts",
        f"- per server by CPU: {cpu_per_backup:.2f} CPU s per backup on the server; half of {server_cores} cores "
        f"for {window:.0f} s: floor(0.5 x {server_cores} x {window:.0f} / {cpu_per_backup:.2f}) = {by_cpu} hosts",
        f"- servers: ceil({hosts} / {per_server}) = {servers}, {on_each} hosts each: on average {concurrent:.2f} "
        f"jobs at once (Poisson, 99.9th percentile: {poisson_quantile(concurrent, 0.999)}), {100 * cpu_share:.1f}% "
        f"of the server's CPU, {rate:.2f} MB/s into its disks",
        f"- with the roles' default spread ({DEFAULT_SPREAD} s) instead: {hosts} x {backup:.1f} / {DEFAULT_SPREAD} = "
        f"{default:.2f} jobs at once on one server (99.9th percentile: {poisson_quantile(default, 0.999)})",
    ]
    if costs.controller_cpu_per_host:
        floor_s = hosts * costs.controller_cpu_per_host / controller_cores
        lines.append(f"- the controller alone: {costs.controller_cpu_per_host:.1f} CPU s per more host in a first "
                     f"converge (ansible and its forks), so {hosts} hosts need at least {hosts} x "
                     f"{costs.controller_cpu_per_host:.1f} / {controller_cores} cores = {floor_s:.0f} s = "
                     f"{floor_s / 3600:.1f} h of a {controller_cores}-core controller, whatever the forks")
    return Plan(hosts, window_hours, forks, converge / 3600, servers, per_server, spread, concurrent,
                poisson_quantile(concurrent, 0.999), cpu_share, rate, lines)


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(X <= k) >= q for X ~ Poisson(mean): how many jobs run at once on a server, at most,
    in all but 1 - q of the moments, when they start independently and uniformly over the spread."""
    k, term = 0, math.exp(-mean)
    total = term
    while total < q:
        k += 1
        term *= mean / k
        total += term
    return k


def median(values: list[float]) -> float:
    """The median of a non-empty series."""
    return statistics.median(values)


def _cell(values: list[float], digits: int = 1, scale: float = 1.0) -> str:
    """A series as 'median (min-max)', or its one value."""
    low, mid, high = min(values) / scale, statistics.median(values) / scale, max(values) / scale
    return f"{mid:.{digits}f}" if len(values) == 1 else f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _cpu(samples: dict[str, list[float]], count: int, run: str) -> str:
    """The CPU a converge used in the containers and on the controller, 'hosts + controller'."""
    hosts = samples.get(f"fleet.converge.{count}.{run}.hosts_cpu_seconds")
    controller = samples.get(f"fleet.converge.{count}.{run}.controller_cpu_seconds")
    return f"{median(hosts):.0f} + {median(controller):.0f}" if hosts and controller else "-"


def costs(samples: dict[str, list[float]], counts: list[int]) -> Costs | None:
    """The model's inputs from the samples, or None when a part was not measured."""
    needed = ["fleet.backup.alone.seconds", "fleet.backup.all.seconds", "fleet.backup.all.server.added_bytes"]
    needed += [f"fleet.converge.{count}.first.seconds" for count in counts]
    if not counts or not all(samples.get(key) for key in needed):
        return None
    most = max(counts)
    return Costs(converge_seconds={count: median(samples[f"fleet.converge.{count}.first.seconds"]) for count in counts},
                 backup_seconds=median(samples["fleet.backup.alone.seconds"]),
                 concurrent_seconds=median(samples["fleet.backup.all.seconds"]), concurrency=most,
                 bytes_per_backup=median(samples["fleet.backup.all.server.added_bytes"]) / most,
                 server_cpu_seconds=median(samples.get("fleet.backup.all.server.cpu_seconds") or [0.0]),
                 controller_cpu_per_host=controller_per_host(samples, counts))


def controller_per_host(samples: dict[str, list[float]], counts: list[int]) -> float:
    """The controller's CPU for one more host in a first converge: the slope between the smallest and the largest
    count (the server's play is in both), or the largest count's CPU shared by its hosts when one count ran."""
    def cpu(count: int) -> float | None:
        values = samples.get(f"fleet.converge.{count}.first.controller_cpu_seconds")
        return median(values) if values else None

    low, high = min(counts), max(counts)
    top, bottom = cpu(high), cpu(low)
    if top is None:
        return 0.0
    if high > low and bottom is not None:
        return max(0.0, (top - bottom) / (high - low))
    return top / high


def markdown(meta: dict[str, object], samples: dict[str, list[float]], counts: list[int],
             where: dict[str, dict[str, float]]) -> str:
    """fleet.md: the machine and its load, converge at forks N against 1, backups at once against alone, the
    slowest tasks, and the model for 1,000 hosts."""
    lines = ["# selfhost.backup fleet benchmark (`BENCH_PHASES=fleet`)", "",
             "Each cell: median (min-max) of the runs, or the one value. See bench/README.md, \"Fleet\".", "",
             "## Machine and versions", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    loads = samples.get("fleet.load1", [])
    others = samples.get("fleet.other_containers", [])
    if loads:
        lines += ["", f"**Load**: the 1-minute load average, read before and after every timed step, was "
                      f"{min(loads):.2f} to {max(loads):.2f} (median {median(loads):.2f}) on "
                      f"{meta.get('cores', '?')} cores, with {min(others):.0f} to {max(others):.0f} other "
                      "containers running (other sessions' molecule scenarios). The figures were taken on a loaded "
                      "machine: compare ratios, not seconds."]
    base = {run: samples.get(f"fleet.converge.1.{run}.seconds") for run in ("first", "second")}
    lines += ["", "## Converge: N clients at forks N against 1 client", "",
              "| clients (= forks) | first converge, s | ratio to 1 | CPU s: containers + controller | "
              "second converge, s | ratio to 1 | CPU s: containers + controller | changed in the second |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for count in counts:
        row = [str(count)]
        for run in ("first", "second"):
            values = samples.get(f"fleet.converge.{count}.{run}.seconds", [])
            one = base[run]
            row += [_cell(values) if values else "-",
                    f"{median(values) / median(one):.2f}x" if values and one else "-", _cpu(samples, count, run)]
        changed = samples.get(f"fleet.converge.{count}.second.changed", [])
        row.append(f"{median(changed):.0f}" if changed else "-")
        lines.append("| " + " | ".join(row) + " |")
    most = max(counts, default=0)
    alone, together = samples.get("fleet.backup.alone.seconds"), samples.get("fleet.backup.all.seconds")
    if alone and together:
        ratios = [a / b for a, b in zip(together, alone, strict=True)]
        lines += ["", f"## Backups: {most} clients at the same moment against one alone", "",
                  "| | wall time, s | server CPU, s | server peak, cores | server peak memory, MiB | "
                  "stored on the server, MB |", "| --- | --- | --- | --- | --- | --- |"]
        for subject, label in (("alone", "1 client alone"), ("all", f"{most} clients at once")):
            key = f"fleet.backup.{subject}"
            cells = [_cell(samples[f"{key}.seconds"], 2)]
            for series, digits, scale in (("cpu_seconds", 2, 1.0), ("peak_cores", 2, 1.0),
                                          ("peak_memory_bytes", 0, 1048576.0), ("added_bytes", 1, 1e6)):
                values = samples.get(f"{key}.server.{series}")
                cells.append(_cell(values, digits, scale) if values else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"{most} at once / 1 alone, per round: {_cell(ratios, 2)}x "
                      f"({most / median(ratios):.1f} backups in the time of one)."]
    lines += ["", "## Where converge time goes (slowest tasks, summed wall time of each task, seconds)", ""]
    lines += [f"- {run}: " + "; ".join(f"{name} {secs:.1f}" for name, secs in tasks.items())
              for run, tasks in where.items()]
    measured = costs(samples, counts)
    if measured is not None:
        answer = plan(measured)
        lines += ["", f"## Model: {answer.hosts} hosts, a {answer.window_hours:.0f}-hour nightly window "
                      "(from the figures above)", ""] + answer.lines
    return "\n".join(lines) + "\n"
