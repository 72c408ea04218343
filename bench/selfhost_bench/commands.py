"""The command lines the benchmark times, each run with bash as root inside the container."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "/srv/bench"
PASSPHRASE = "bench-passphrase"
HOST = "selfhost-backup-bench"
DUMP = "pg_dumpall --clean --if-exists"
BORG_COMPRESSION = "zstd,3"  # the borg role's default, so the raw run compresses the same way
BORG_CHUNKER = "buzhash,14,18,16,4095"  # the borg role's default chunker_params (issue 20), for the same reason
AS_POSTGRES = "runuser -u postgres -- env HOME=/var/lib/postgresql"


@dataclass(frozen=True)
class Subject:
    """One thing to back up and restore: ours (a unit of the roles) or the raw pipeline by hand."""

    key: str  # e.g. restic.ours, restic.ours_gzip, restic.raw, floor
    tool: str  # restic, borg or "" for the floor
    repository: str
    backup: str
    reset: str  # empties the repository for a cold (first) backup
    restore: str


def ours(tool: str, instance: str) -> Subject:
    """Our unit and restore script of instance plain (the default request) or gzip (the seed's)."""
    repo = f"{ROOT}/{tool}-{instance}"
    key = f"{tool}.ours" + ("" if instance == "plain" else "_gzip")
    return Subject(key, tool, repo, f"systemctl start --wait {tool}-backup-{instance}.service",
                   reset_ours(tool, instance, repo), f"{tool}-restore-{instance} restore latest")


def reset_ours(tool: str, instance: str, repo: str) -> str:
    """Empty our repository: restic's is initialised again (the role does that at converge time), borg's
    is left empty with the job's marker removed, so the job initialises it (as its first backup does)."""
    if tool == "restic":
        return f"rm -rf {repo} && {AS_POSTGRES} RESTIC_PASSWORD={PASSPHRASE} restic init --repo {repo}"
    marker = f"/var/cache/borg-backup-{instance}/selfhost-backup-initialised"
    return f"rm -rf {repo} {marker} && install -d -m 0700 -o postgres -g postgres {repo}"


def as_postgres(env: dict[str, str], unit: bool) -> str:
    """The prefix that runs a command as postgres with env: by hand (runuser, in the shell of `docker exec`)
    or, with unit, in a transient unit of system.slice (systemd-run), where our units run too."""
    env = {"HOME": "/var/lib/postgresql", **env}
    if unit:
        return "systemd-run --quiet --wait --pipe --collect -p User=postgres " + " ".join(
            f"--setenv={key}={value}" for key, value in env.items())
    return "runuser -u postgres -- env " + " ".join(f"{key}={value}" for key, value in env.items())


def raw_restic(unit: bool = False) -> Subject:
    """restic by hand: the same dump, the options restic needs, the repository initialised beforehand."""
    name = "raw_unit" if unit else "raw"
    repo = f"{ROOT}/{name}-restic"
    run = as_postgres({"RESTIC_REPOSITORY": repo, "RESTIC_PASSWORD": PASSPHRASE}, unit)
    backup = (f"{run} restic backup --stdin-from-command --stdin-filename postgres.sql --host {HOST} "
              f"-- {DUMP}")
    restore = f"{run} bash -c 'set -o pipefail; restic dump latest /postgres.sql | psql -X -q -d postgres'"
    reset = f"rm -rf {repo} && {as_postgres({'RESTIC_PASSWORD': PASSPHRASE}, False)} restic init --repo {repo}"
    return Subject(f"restic.{name}", "restic", repo, backup, reset, restore)


def raw_borg(unit: bool = False) -> Subject:
    """borg by hand: borg create --content-from-command, initialising the repository on the first run."""
    name = "raw_unit" if unit else "raw"
    return _borg_by_hand(f"borg.{name}", f"{ROOT}/{name}-borg", BORG_CHUNKER, unit, "| psql -X -q -d postgres")


def _borg_by_hand(series: str, repo: str, chunker_params: str, unit: bool, sink: str) -> Subject:
    """borg create --content-from-command of the plain dump into ``repo`` (initialised by the first backup,
    removed by the reset); the restore extracts the newest archive's dump into ``sink`` (a pipe or a redirection)."""
    run = as_postgres({"BORG_REPO": repo, "BORG_PASSPHRASE": PASSPHRASE}, unit)
    create = (f"borg create --compression {BORG_COMPRESSION} --chunker-params {chunker_params} "
              f"--content-from-command --stdin-name postgres.sql '::raw-{{utcnow:%Y-%m-%dT%H:%M:%S.%f}}' -- {DUMP}")
    init = "{ [ -e " + repo + "/config ] || borg init --encryption repokey-blake2; }"
    backup = f"{run} bash -c {quote(init + ' && ' + create)}"
    restore = (f"{run} bash -c 'set -o pipefail; a=$(borg list --short --last 1) && "
               f"borg extract --stdout ::$a postgres.sql {sink}'")
    return Subject(series, "borg", repo, backup, f"rm -rf {repo}", restore)


# The chunker candidates of the chunker phase (BENCH_BORG_CHUNKER_CANDIDATES): borg's default (2 MiB on
# average), then smaller average chunks (2^MASK_BITS): 1 MiB, 256 KiB, 64 KiB.
CHUNKER_CANDIDATES = "buzhash,19,23,21,4095 buzhash,18,22,20,4095 buzhash,16,20,18,4095 buzhash,14,18,16,4095"


def chunker_label(params: str) -> str:
    """A series name for chunker params: buzhash,16,20,18,4095 -> buzhash_16_20_18_4095."""
    return params.replace(",", "_")


def chunker_borg(params: str) -> Subject:
    """borg by hand with --chunker-params: the plain dump into a repository of its own; its restore is the
    extraction of the dump alone (to /dev/null: the replay into PostgreSQL is the same for every candidate)."""
    label = chunker_label(params)
    return _borg_by_hand(f"borg.{label}", f"{ROOT}/chunker-{label}", params, False, ">/dev/null")


def chunker_subjects(candidates: str = CHUNKER_CANDIDATES) -> list[Subject]:
    """borg by hand with each candidate's chunker params."""
    return [chunker_borg(params) for params in candidates.split()]


def floor() -> Subject:
    """The dump alone, to /dev/null: no backup can be faster."""
    return Subject("floor", "", "", f"{AS_POSTGRES} {DUMP} >/dev/null", "true", "true")


def backup_subjects() -> list[Subject]:
    """Everything measured in the backup rounds, in the order of the first round."""
    return [floor(), raw_restic(), ours("restic", "plain"), raw_restic(unit=True), ours("restic", "gzip"),
            raw_borg(), ours("borg", "plain"), raw_borg(unit=True), ours("borg", "gzip")]


def restore_subjects() -> list[Subject]:
    """Everything measured in the restore rounds; restic.raw_nocache is restic by hand without its local
    cache, as our restore script runs it interactively."""
    raw = raw_restic()
    nocache = Subject("restic.raw_nocache", "restic", raw.repository, raw.backup, raw.reset,
                      raw.restore.replace("restic dump", "restic --no-cache dump"))
    return [raw, ours("restic", "plain"), nocache, raw_borg(), ours("borg", "plain")]


def drill_subjects() -> list[Subject]:
    """The drill phase, per tool: our plain restore of the latest snapshot into the live cluster (as the restore
    phase runs it) and the drill unit of instance plain, which restores the same snapshot into a scratch cluster
    and checks it. No backup runs between them: both read the same snapshot."""
    out = []
    for tool in ("restic", "borg"):
        plain = ours(tool, "plain")
        out.append(Subject(f"{tool}.restore", tool, plain.repository, plain.backup, plain.reset, plain.restore))
        out.append(Subject(f"{tool}.drill", tool, plain.repository, plain.backup, plain.reset,
                           f"systemctl start --wait {drill_unit(tool)}"))
    return out


def drill_unit(tool: str) -> str:
    """The drill unit of instance plain (site.yml enables its drill, on a calendar that never comes)."""
    return f"{tool}-drill-plain.service"


def incremental_subjects() -> list[Subject]:
    """Our units of both tools with both requests."""
    return [ours(tool, instance) for tool in ("restic", "borg") for instance in ("plain", "gzip")]


def quote(text: str) -> str:
    """Quote text for the container's shell."""
    return "'" + text.replace("'", "'\\''") + "'"
