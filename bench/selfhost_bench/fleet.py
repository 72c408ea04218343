"""The fleet phase (BENCH_PHASES=fleet): one backup server and N clients in containers, converged with
extensions/molecule/fleet/converge.yml at forks N, then N clients backing up at once; results in
bench/results/fleet.{md,json}. The pure parts are in fleet_logic."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from . import fleet_logic as logic
from .measure import Log, Samples

BENCH = Path(__file__).resolve().parent.parent
TOP = BENCH.parent
PLAYBOOK = TOP / "extensions" / "molecule" / "fleet" / "converge.yml"
PREPARE = TOP / "extensions" / "molecule" / "resources" / "prepare.yml"
HERE = Path(__file__).resolve().parent
# The fleet scenario's SQLite database and its owner (extensions/molecule/fleet/vars.yml).
SQLITE_PATH, SQLITE_USER = "/var/lib/fleetapp/app.db", "fleetapp"


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """A command on this machine; fails loudly."""
    return subprocess.run(argv, text=True, capture_output=True, check=True, **kwargs)  # type: ignore[call-overload]


def load() -> float:
    """The 1-minute load average of this machine."""
    return float(Path("/proc/loadavg").read_text(encoding="utf-8").split()[0])


def busy_containers() -> int:
    """Running containers on this machine that are not the fleet's: the other work beside the bench."""
    names = run(["docker", "ps", "--format", "{{.Names}}"]).stdout.split()
    return sum(1 for name in names if not name.startswith(logic.PREFIX))


def destroy() -> None:
    """Remove every fleet container and the fleet's network."""
    ids = run(["docker", "ps", "--all", "--quiet", "--filter", f"name=^{logic.PREFIX}-"]).stdout.split()
    if ids:
        run(["docker", "rm", "--force", *ids])
    subprocess.run(["docker", "network", "rm", logic.NETWORK], capture_output=True, check=False)


def create(count: int) -> None:
    """Fresh containers: the server and count clients, on the fleet's network."""
    destroy()
    run(["docker", "network", "create", logic.NETWORK])
    apt_cache = os.environ.get("SELFHOST_BACKUP_APT_CACHE", "/var/cache/selfhost-backup/apt")
    names = [logic.SERVER, *logic.client_names(count)]
    seed_apt_cache(Path(apt_cache), names)
    for name in names:
        run(logic.docker_run_argv(name, apt_cache))


def seed_apt_cache(apt_cache: Path, names: list[str]) -> None:
    """Give every container's archive directory the packages any container of its Debian suite downloaded before
    (hard links), so that no count's first converge times downloads that another did not."""
    for name in names:
        (apt_cache / name).mkdir(parents=True, exist_ok=True)
    known = [p.name for p in apt_cache.iterdir() if p.name.startswith(f"{logic.PREFIX}-")]
    for name in names:
        for sibling in known:
            if sibling == name or logic.suite_of(sibling) != logic.suite_of(name):
                continue
            for deb in (apt_cache / sibling).glob("*.deb"):
                target = apt_cache / name / deb.name
                if not target.exists():
                    os.link(deb, target)


def playbook(path: Path, inventory: Path, forks: int, provider: str, timings: Path) -> tuple[float, str]:
    """ansible-playbook path at forks, timed from the controller; its log (with the recap) and per-task times in
    timings."""
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(BENCH / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="bench_timings", BENCH_TIMINGS_FILE=str(timings),
               ANSIBLE_FORKS=str(forks))
    argv = ["ansible-playbook", "-i", str(inventory), str(path), "-e", f"fleet_server={logic.SERVER}"]
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, check=False)
    seconds = time.monotonic() - start
    timings.with_suffix(".log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"{path.name} ({provider}, forks {forks}) failed: see {timings.with_suffix('.log')}\n"
                           + proc.stdout[-3000:])
    return seconds, proc.stdout


def cpu_nanoseconds(names: list[str]) -> int:
    """CPU time used so far by these containers (cgroup v1 cpuacct, read from this machine), 0 when not found."""
    ids = run(["docker", "inspect", "--format", "{{.Id}}", *names]).stdout.split()
    paths = [Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage") for cid in ids]
    return sum(int(path.read_text(encoding="utf-8")) for path in paths if path.exists())


def controller_cpu_seconds() -> float:
    """CPU time used so far by the finished children of this process (ansible-playbook and its forks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def top_tasks(timings: Path, limit: int = 8) -> dict[str, float]:
    """The tasks that took longest in one run."""
    totals: dict[str, float] = json.loads(timings.read_text(encoding="utf-8"))
    return dict(sorted(totals.items(), key=lambda item: -item[1])[:limit])


def script(name: str, container: str, *args: str) -> subprocess.Popen[str]:
    """Start one of this package's shell scripts in a container (bash -s), its arguments after it."""
    with open(HERE / name, encoding="utf-8") as source:
        return subprocess.Popen(["docker", "exec", "-i", container, "bash", "-s", "--", *args], stdin=source,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait(proc: subprocess.Popen[str]) -> str:
    """The output of a script started by script(); fails with its errors."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {err[-2000:]}")
    return out


class ServerProbe:
    """Samples the server container's cgroup (v1, from this machine) 5 times a second: its CPU time and its memory
    as `docker stats` counts it (usage less inactive file pages). Nothing when the cgroup is not found."""

    def __init__(self, container: str) -> None:
        cid = run(["docker", "inspect", "--format", "{{.Id}}", container]).stdout.strip()
        self.cpu = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
        self.memory = Path(f"/sys/fs/cgroup/memory/docker/{cid}")
        self.samples: list[tuple[float, int]] = []
        self.peak_bytes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def found(self) -> bool:
        """Whether this machine shows the container's cgroup where it is looked for."""
        return self.cpu.exists() and (self.memory / "memory.usage_in_bytes").exists()

    def _memory(self) -> int:
        usage = int((self.memory / "memory.usage_in_bytes").read_text(encoding="utf-8"))
        stat = dict(line.split() for line in (self.memory / "memory.stat").read_text(encoding="utf-8").splitlines())
        return usage - int(stat.get("total_inactive_file", "0"))

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), int(self.cpu.read_text(encoding="utf-8"))))
            self.peak_bytes = max(self.peak_bytes, self._memory())
            self.stop.wait(0.2)

    def __enter__(self) -> ServerProbe:
        if self.found:
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def cpu_seconds(self) -> float:
        """CPU time the server used between the first and the last sample."""
        return (self.samples[-1][1] - self.samples[0][1]) / 1e9 if len(self.samples) > 1 else 0.0


def repository_bytes(provider: str) -> int:
    """What the server's repositories of provider hold (backup_server_restic_directory / _borg_directory)."""
    where = "/srv/restic" if provider == "restic" else "/srv/borg"
    out = run(["docker", "exec", logic.SERVER, "du", "-sb", where]).stdout
    return int(out.split()[0])


def backups(clients: list[str], provider: str, size_mb: int) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """New data in every client's database, then every client's backup unit started at the same second; the start
    and end of each, and what the server used meanwhile."""
    for proc in [script("fleet_data.sh", c, SQLITE_PATH, SQLITE_USER, str(size_mb)) for c in clients]:
        wait(proc)
    before = repository_bytes(provider)
    at = int(time.time()) + 4  # docker exec takes a while to start on a busy machine
    with ServerProbe(logic.SERVER) as probe:
        procs = [script("fleet_backup.sh", c, str(at), f"{provider}-backup-app.service") for c in clients]
        outs = [wait(proc).split() for proc in procs]
    failed = [c for c, out in zip(clients, outs, strict=True) if out[0] != "0"]
    if failed:
        raise RuntimeError(f"the backups of {failed} failed: see journalctl -u {provider}-backup-app in them")
    server = {"added_bytes": float(repository_bytes(provider) - before)}
    if probe.found:
        server |= {"cpu_seconds": probe.cpu_seconds(), "peak_cores": logic.peak_cores(probe.samples),
                   "peak_memory_bytes": float(probe.peak_bytes)}
    return [(float(out[1]), float(out[2])) for out in outs], server


def measure(counts: list[int], runs: int, provider: str, size_mb: int, workdir: Path, log: Log,
            save: Callable[[Samples, dict[str, dict[str, float]]], None],
            kept: tuple[Samples, dict[str, dict[str, float]]] = ({}, {})) -> tuple[Samples, dict[str, dict[str, float]]]:
    """For each count, smallest and largest first (logic.order): fresh containers, the first converge and a second
    one at forks = count; between the largest count's two converges, runs rounds of one client backing up alone and of every
    client at once. save gets what is measured so far after every step (a stopped run keeps it); kept: the
    samples of an earlier run to keep (BENCH_FLEET_MERGE)."""
    # The backups run on the largest count, unless a kept run had a larger one and its backups are kept.
    earlier = {int(key.split(".")[2]) for key in kept[0] if key.startswith("fleet.converge.")}
    backups_at = max(counts) if max(counts) >= max(earlier, default=0) else 0
    samples: Samples = defaultdict(list, kept[0])
    where: dict[str, dict[str, float]] = dict(kept[1])

    def note_load() -> None:
        samples["fleet.load1"].append(load())
        samples["fleet.other_containers"].append(float(busy_containers()))

    for count in logic.order(counts):
        log(f"fleet {count}: creating the server and {count} clients")
        create(count)
        inventory = workdir / f"fleet-{count}.json"
        inventory.write_text(json.dumps(logic.inventory(count, provider), indent=1), encoding="utf-8")
        names = [logic.SERVER, *logic.client_names(count)]
        booted(names)
        playbook(PREPARE, inventory, count + 1, provider, workdir / f"prepare-{count}.json")
        for run_name in ("first", "second"):
            if run_name == "second" and count == backups_at:
                # The backups right after the first converge of the largest count: a run stopped by a deadline
                # has them before the second converge.
                backup_rounds(samples, logic.client_names(count), runs, provider, size_mb, log, note_load)
                save(samples, where)
            note_load()
            hosts_cpu, controller_cpu = cpu_nanoseconds(names), controller_cpu_seconds()
            seconds, out = playbook(PLAYBOOK, inventory, count, provider, workdir / f"{run_name}-{count}.json")
            samples[f"fleet.converge.{count}.{run_name}.hosts_cpu_seconds"].append(
                (cpu_nanoseconds(names) - hosts_cpu) / 1e9)
            samples[f"fleet.converge.{count}.{run_name}.controller_cpu_seconds"].append(
                controller_cpu_seconds() - controller_cpu)
            note_load()
            changed = sum(host["changed"] for host in logic.recap(out).values())
            samples[f"fleet.converge.{count}.{run_name}.seconds"].append(seconds)
            samples[f"fleet.converge.{count}.{run_name}.changed"].append(float(changed))
            where[f"{run_name}-{count}"] = top_tasks(workdir / f"{run_name}-{count}.json")
            log(f"fleet {count}: {run_name} converge {seconds:.1f} s at forks {count}, {changed} changed")
            save(samples, where)
    return samples, where


def booted(names: list[str], limit: float = 600.0) -> None:
    """Wait until systemd has booted in every container (running or degraded): on a busy machine `docker exec`
    fails for a while after `docker run`, and the scenarios' prepare.yml does not retry it."""
    deadline = time.monotonic() + limit
    for name in names:
        while True:
            proc = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running", "--wait"],
                                  capture_output=True, text=True, check=False)
            if proc.stdout.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not boot: {proc.stdout.strip()} {proc.stderr.strip()}")
            time.sleep(2)


def backup_rounds(samples: Samples, clients: list[str], runs: int, provider: str, size_mb: int, log: Log,
                  note_load: Callable[[], None]) -> None:
    """runs rounds of the first client backing up alone and of every client at once."""
    for turn in range(runs):
        # Alone first in even rounds, all first in odd ones: both see the machine's noise.
        for subject in (("alone", "all") if turn % 2 == 0 else ("all", "alone")):
            chosen = clients[:1] if subject == "alone" else clients
            note_load()
            times, server = backups(chosen, provider, size_mb)
            note_load()
            samples[f"fleet.backup.{subject}.seconds"].append(logic.span(times))
            for key, value in server.items():
                samples[f"fleet.backup.{subject}.server.{key}"].append(value)
            log(f"fleet backup {turn + 1}/{runs} {subject} ({len(chosen)}): {logic.span(times):.1f} s")
