"""Restore drills through the providers' drill units (issue 17): each requester and each provider on both releases.

Each instance has settings.drill enabled; its drill unit (<provider>-drill-<instance>.service, hardened like the
backup: PrivateTmp=, ProtectSystem=strict, ...) streams the newest snapshot into the request's drill_cmd, so the
PostgreSQL scratch cluster and the MariaDB scratch server run inside that unit. Per pair: a backup whose check is
false fails its drill; a good backup's drill passes, the live database's values and databases are as they were, and
no scratch file or process is left; a cut dump whose producer exits 0 backs up fine and its drill fails, reported in
the unit, the metrics and selfhost-backup status. Runs after test_contract.py (file order): it adds snapshots.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import VARS, Box
from dialects import STATE_1, STATE_2, expected
from test_contract import DIALECTS, ONE_PROVIDER_EACH, _live, _scratch, backup_ok, request_of

METRICS_DIR = VARS["contract_test_metrics_dir"]
METRIC_LINE = re.compile(r'^(selfhost_backup_[a-z_]+)\{provider="([a-z]+)",name="([a-z_]+)"\} ([0-9]+)$')
DRILL_CASES = ONE_PROVIDER_EACH
# Where the dump is cut: every dump of the scenario is larger (the fixture's large value is in it).
CUT_AT = 100_000


def drill_unit(provider: str, instance: str) -> str:
    return f"{provider}-drill-{instance}.service"


def wait_until_ended(box: Box, unit: str) -> None:
    """Wait (up to 60 s) until the unit is inactive or failed: "deactivating" (systemd still stopping or killing its
    processes, the finish hook not run yet) is not the end, though is-active says no to it too."""
    box.ok(f"for i in $(seq 1 120); do case $(systemctl show -p ActiveState --value {unit}) in "
           f"failed|inactive) exit 0 ;; esac; sleep 0.5; done; exit 1")


def drill(box: Box, provider: str, instance: str) -> tuple[int, str]:
    """Start the drill unit and wait for its end; its journal of this run (the invocation's lines)."""
    unit = drill_unit(provider, instance)
    cursor = box.ok("journalctl -q -n 1 -o cat --show-cursor | sed -n 's/^-- cursor: //p'").strip()
    result = box.run(f"systemctl start --wait {unit}", timeout=900)
    # The finish hook (ExecStopPost=) has run once the unit is inactive or failed.
    wait_until_ended(box, unit)
    # The run's lines, once journald has them all (job.sh's last line says passed or failed).
    script = f"{provider}-restore-{instance}"
    last = f"-e '^{script}: drill of .* passed$' -e '^{script}: drill failed: ' -e '^{script}: no '"
    journal = f"journalctl --no-pager -o cat -u {unit} --after-cursor={shlex.quote(cursor)}"
    lines = box.run(f"for i in $(seq 1 40); do {journal} >/root/drill.log; grep -q {last} /root/drill.log && break; "
                    "sleep 0.5; done; cat /root/drill.log")
    assert lines.returncode == 0, lines.stderr[-2000:]
    # A cut dump can end inside a UTF-8 character, and the helper's error may quote that line (sqlite3 3.40 of
    # Debian 12 does).
    return result.returncode, " ".join(lines.stdout.decode(errors="replace").split())


def metrics(box: Box, provider: str, instance: str) -> dict[str, int]:
    values = {}
    for line in box.ok(f"cat {METRICS_DIR}/{provider}-backup-{instance}.prom").splitlines():
        if line.startswith("# "):
            continue
        match = METRIC_LINE.match(line)
        assert match and match.group(2, 3) == (provider, instance), line
        values[match.group(1)] = int(match.group(4))
    return values


def status(box: Box, provider: str, instance: str) -> dict:
    entries = json.loads(box.run("selfhost-backup status --json").stdout.decode())
    return next(entry for entry in entries if entry["provider"] == provider and entry["instance"] == instance)


def no_private_tmp_left(box: Box, provider: str, instance: str) -> bool:
    return box.run(f"ls -d /tmp/systemd-private-*-{drill_unit(provider, instance)}-*").returncode != 0


# Load on the live server while a drill runs (the drill must not care): a writer in a database the fixture
# comparison does not read. SQLite has no server.
LOAD = {
    "pg": ("runuser -u postgres -- psql -X -q -d postgres -c 'CREATE TABLE IF NOT EXISTS drill_load (n int)'",
           "runuser -u postgres -- psql -X -q -d postgres -c 'INSERT INTO drill_load SELECT generate_series(1, 2000); "
           "DELETE FROM drill_load WHERE n % 3 = 0; SELECT count(*) FROM pg_class'"),
    "mariadb": ("mariadb -e 'CREATE DATABASE IF NOT EXISTS drill_load; "
                "CREATE TABLE IF NOT EXISTS drill_load.t (n INT) ENGINE=InnoDB'",
                "mariadb -e 'INSERT INTO drill_load.t SELECT seq FROM seq_1_to_2000; "
                "DELETE FROM drill_load.t WHERE n % 3 = 0'"),
}


def start_load(box: Box, instance: str) -> str:
    """Start the writer (its process group id), or "" for SQLite."""
    kind = next((kind for kind in LOAD if instance.startswith(kind)), "")
    if kind not in LOAD:
        return ""
    prepare, statement = LOAD[kind]
    box.ok(f"cd / && {prepare} >/dev/null")
    loop = f"cd / && while :; do {statement} >/dev/null; done"
    return box.ok(f"setsid bash -c {shlex.quote(loop)} </dev/null >/dev/null 2>&1 & echo $!").strip()


def stop_load(box: Box, group: str) -> None:
    if group:
        box.run(f"kill -TERM -- -\"$(ps -o pgid= -p {group} | tr -d ' ')\"; sleep 1")


def cut_producer(box: Box, provider: str, instance: str) -> str:
    """Make the instance's backup_cmd cut its dump and still exit 0 (as `pg_dumpall | head -c N; true` would), in
    the instance's data file; returns the file as it was, for restore_producer."""
    script = f"/usr/local/bin/{provider}-restore-{instance}"
    original = box.ok(f"cat {script}")
    command = request_of(box, instance)["backup_cmd"]
    cut = f"readonly BACKUP_CMD={shlex.quote(f'{command} | head -c {CUT_AT}; true')}"
    lines = [cut if line.startswith("readonly BACKUP_CMD=") else line for line in original.split("\n")]
    assert lines.count(cut) == 1, original
    box.ok(f"cat > {script}", "\n".join(lines).encode())
    return original


def restore_producer(box: Box, provider: str, instance: str, original: str) -> None:
    box.ok(f"cat > /usr/local/bin/{provider}-restore-{instance}", original.encode())


@pytest.mark.parametrize("release, instance, provider", DRILL_CASES, ids=["-".join(case) for case in DRILL_CASES])
def test_drill_unit_of_each_requester_and_provider(release: str, instance: str, provider: str):
    """A false check fails the drill; a good backup's drill passes and leaves the live database and the host as
    they were; a cut dump that backed up fine fails its drill, reported (unit, metric, status)."""
    box = Box(f"contract-{release}")
    dialect = DIALECTS[instance]
    unit = drill_unit(provider, instance)
    service = box.ok(f"cat /etc/systemd/system/{unit}").splitlines()
    for line in ("PrivateTmp=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 f"ExecStart=/bin/bash /usr/local/bin/{provider}-restore-{instance} drill latest"):
        assert line in service, (line, service)

    # State 2 backs up, restores in the scratch copy, and the role's check (row 5 is there) says false: failed.
    dialect.write(box, STATE_2)
    backup_ok(box, provider, instance)
    rc, log = drill(box, provider, instance)
    assert rc != 0, log
    assert "not true: " in log and "drill failed: drill_cmd exited" in log, log
    assert box.run(f"systemctl is-failed {unit}").stdout.decode().strip() == "failed"
    assert metrics(box, provider, instance)["selfhost_backup_last_drill_exit_status"] == 1
    entry = status(box, provider, instance)
    assert "drill failed" in entry["problems"] and entry["drill"]["result"] == "exit-code", entry

    # State 1: the drill passes inside the unit (the scratch server ran there) while the live server is under
    # load; the live data is as it was.
    dialect.write(box, STATE_1)
    group = start_load(box, instance)
    try:
        backup_ok(box, provider, instance)
        live, scratch = _live(box, dialect, instance), _scratch(box)
        rc, log = drill(box, provider, instance)
    finally:
        stop_load(box, group)
    assert rc == 0, log
    assert "drill passed: " in log and f"of instance {instance} passed" in log, log
    if instance != "sqlite":
        assert "drill check passed in database fixture: " in log, log
    assert _live(box, dialect, instance) == live and dialect.read(box) == expected(STATE_1)
    assert _scratch(box) == scratch and no_private_tmp_left(box, provider, instance)
    good = metrics(box, provider, instance)
    assert good["selfhost_backup_last_drill_exit_status"] == 0, good
    assert good["selfhost_backup_last_drill_success_timestamp_seconds"] >= good[
        "selfhost_backup_last_success_timestamp_seconds"]
    entry = status(box, provider, instance)
    assert entry["drill"]["result"] == "success" and "drill failed" not in entry["problems"], entry

    # A producer that cuts its dump and exits 0: the backup succeeds, its drill fails, reported.
    original = cut_producer(box, provider, instance)
    try:
        backup_ok(box, provider, instance)
    finally:
        restore_producer(box, provider, instance, original)
    rc, log = drill(box, provider, instance)
    assert rc != 0, log
    assert "drill failed: the dump" in log and "drill check passed" not in log, log
    assert box.run(f"systemctl is-failed {unit}").stdout.decode().strip() == "failed"
    values = metrics(box, provider, instance)
    assert values["selfhost_backup_last_drill_exit_status"] == 1, values
    assert values["selfhost_backup_last_exit_status"] == 0, values  # the backup itself "succeeded"
    assert values["selfhost_backup_last_drill_success_timestamp_seconds"] == good[
        "selfhost_backup_last_drill_success_timestamp_seconds"]
    entry = status(box, provider, instance)
    assert "drill failed" in entry["problems"] and entry["ok"] is False, entry
    assert _live(box, dialect, instance) == live and _scratch(box) == scratch
    assert no_private_tmp_left(box, provider, instance)

    # A good backup again: the drill passes and the instance is ok again.
    backup_ok(box, provider, instance)
    rc, log = drill(box, provider, instance)
    assert rc == 0, log
    assert "drill failed" not in status(box, provider, instance)["problems"]


# A check that holds the drill in its scratch server for a minute, so that the test can kill the unit there.
SLOW_CHECK = {"pg_cluster": ("postgres", "SELECT (SELECT 1 FROM pg_sleep(60)) = 1"),
              "mariadb": ("fixture", "SELECT SLEEP(60) = 0")}
SCRATCH_SERVER = {"pg_cluster": "^postgres -D /tmp/selfhost-backup-drill[.]",
                  "mariadb": "mariadbd --no-defaults .*/tmp/selfhost-backup-drill[.]"}


def replace_data(box: Box, provider: str, instance: str, name: str, value: str) -> str:
    """Set one readonly string of the instance's data file; returns the file as it was."""
    script = f"/usr/local/bin/{provider}-restore-{instance}"
    original = box.ok(f"cat {script}")
    line = f"readonly {name}={shlex.quote(value)}"
    lines = [line if old.startswith(f"readonly {name}=") else old for old in original.split("\n")]
    assert lines.count(line) == 1, original
    box.ok(f"cat > {script}", "\n".join(lines).encode())
    return original


@pytest.mark.parametrize("instance, provider", [("pg_cluster", "restic"), ("mariadb", "borg")])
def test_a_drill_unit_killed_in_its_scratch_server_leaves_nothing_and_is_reported(instance: str, provider: str):
    """SIGKILL to the drill unit while its scratch server runs a check (no cleanup of the helper can run): systemd
    ends the whole unit, the scratch server included, and removes its private /tmp; the metric says 137 (killed
    by signal 9), status says the drill failed; the live database is as it was. The next drill passes."""
    box = Box("contract-debian13")
    dialect = DIALECTS[instance]
    unit = drill_unit(provider, instance)
    dialect.write(box, STATE_1)
    backup_ok(box, provider, instance)
    live, scratch = _live(box, dialect, instance), _scratch(box)
    database, query = SLOW_CHECK[instance]
    command = request_of(box, instance)["drill_cmd"]
    slow = command.replace(" drill ", f" drill --check {database} {shlex.quote(query)} ", 1)
    assert slow != command
    original = replace_data(box, provider, instance, "DRILL_CMD", slow)
    try:
        box.ok(f"systemctl start --no-block {unit}")
        # The scratch server is up, in the drill unit's cgroup.
        box.ok(f"for i in $(seq 1 240); do for pid in $(pgrep -f '{SCRATCH_SERVER[instance]}'); do "
               f"grep -q '/{unit}$' /proc/$pid/cgroup && exit 0; done; sleep 0.5; done; exit 1")
        box.ok(f"systemctl kill -s KILL {unit}")
        # Until systemd has ended the whole unit, the scratch server included.
        wait_until_ended(box, unit)
    finally:
        box.ok(f"cat > /usr/local/bin/{provider}-restore-{instance}", original.encode())
    assert box.run(f"systemctl is-failed {unit}").stdout.decode().strip() == "failed"
    assert metrics(box, provider, instance)["selfhost_backup_last_drill_exit_status"] == 137
    assert "drill failed" in status(box, provider, instance)["problems"]
    assert _scratch(box) == scratch and no_private_tmp_left(box, provider, instance)
    assert _live(box, dialect, instance) == live
    rc, log = drill(box, provider, instance)
    assert rc == 0, log
