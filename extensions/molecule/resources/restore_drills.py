"""Restore drills (settings.drill, issue 17) on the restic and borg scenarios, on real hosts with real systemd.

Instance local of both scenarios has its drill enabled; request A's drill_cmd (vars.yml) restores the dump into a
scratch copy in the unit's private temporary directory and compares it with the file drill-expected of the data
directory, the rows the test knows it backed up. Each scenario's tests/test_restore_drills.py imports these tests;
they run with the failure drills (after the scenario's own tests) and leave instance local with a passing drill.
"""

from __future__ import annotations

import re
import shlex

from drills import Tool, backup_ok, flags, now, read, snapshots, wait_for, wait_until_inactive, write
from failure_paths import last_run_log
from job_checks import UNIT_DIR
from provider_checks import metrics_of, ping_check, pings_seen, server_host, status_of, wait_for_pings
from repository_guards import variant

__all__ = [
    "test_a_good_backup_s_drill_passes_is_monitored_and_leaves_the_live_data_alone",
    "test_a_cut_dump_backs_up_fine_and_its_drill_fails_reported",
    "test_a_drill_of_a_snapshot_that_does_not_exist_fails_clearly_and_changes_nothing",
    "test_a_drill_waits_for_the_running_backup_naming_it",
    "test_disabling_the_drill_removes_its_units",
]

DRILL_METRICS = ("selfhost_backup_last_drill_success_timestamp_seconds", "selfhost_backup_last_drill_duration_seconds",
                 "selfhost_backup_last_drill_exit_status")


def drill_unit(tool: Tool, instance: str = "local") -> str:
    return f"{tool.provider}-drill-{instance}.service"


def drill(host, tool: Tool):
    """Start instance local's drill service and wait for its end (and its ExecStopPost= hook)."""
    result = host.run(f"systemctl start --wait {drill_unit(tool)}")
    wait_until_inactive(host, drill_unit(tool))
    return result


def expect(host, tool: Tool, content: str) -> None:
    """The rows the drill's check expects (request A's drill-expected), and the live data with them."""
    write(host, tool, content)
    write(host, tool, content, "drill-expected")


def drill_ok(host, tool: Tool) -> str:
    result = drill(host, tool)
    log = last_run_log(host, drill_unit(tool), "passed")
    assert result.rc == 0, log
    return log


def test_a_good_backup_s_drill_passes_is_monitored_and_leaves_the_live_data_alone(host, tool, scenario):
    """The drill unit is the backup's user, scheduling and hardening, on its own timer; it restores the newest
    dump into a scratch copy (private /tmp), checks it and removes it; the live data is untouched; the metrics and
    selfhost-backup status show it, beside the backup's. By hand as root the same path passes."""
    provider = tool.provider
    service = host.file(f"{UNIT_DIR}/{drill_unit(tool)}").content_string
    for line in ("User=dbuser", "Nice=10", "IOSchedulingClass=idle", "PrivateTmp=yes", "ProtectSystem=strict",
                 "TimeoutStartSec=300", f"CacheDirectory={provider}-backup-local", "CacheDirectoryMode=0700",
                 f"OnFailure={provider}-drill-local-notify.service", f"ReadWritePaths=/srv/{provider}/local",
                 f"ExecStart=/bin/bash /usr/local/bin/{provider}-restore-local drill latest",
                 f"ExecStopPost=-+/bin/bash /usr/local/bin/{provider}-restore-local drill-finished"):
        assert line in service.splitlines(), (line, service)
    assert "ExecStartPre" not in service and "ReadWritePaths=/var/lib" not in service
    timer = host.file(f"{UNIT_DIR}/{provider}-drill-local.timer").content_string
    assert "OnCalendar=Wed *-*-* 05:30:00" in timer and "RandomizedDelaySec=3600" in timer
    assert host.service(f"{provider}-drill-local.timer").is_enabled
    assert host.run(f"systemd-analyze verify {UNIT_DIR}/{drill_unit(tool)}").rc == 0

    rows = "drill row 1\nrow 2 with 100% and $HOME\n"
    expect(host, tool, rows)
    backup_ok(host, tool, "local")
    backup_metrics = metrics_of(host, provider, "local")
    live = host.check_output(f"stat -c '%i %Y %s' {tool.data_dir}/app.txt")
    log = drill_ok(host, tool)
    assert re.search(rf"drill: scratch copy /tmp/[^/]+/app\.txt, {len(rows.encode())} bytes", log), log
    assert f"drill of {'snapshot' if provider == 'restic' else 'archive'} latest of instance local passed" in log
    # The live data as it was; the unit's private temporary directory (and the scratch copy in it) is gone.
    assert read(host, tool) == rows
    assert host.check_output(f"stat -c '%i %Y %s' {tool.data_dir}/app.txt") == live
    assert host.run(f"ls -d /tmp/systemd-private-*-{drill_unit(tool)}-*").rc != 0
    values = metrics_of(host, provider, "local")
    assert values["selfhost_backup_last_drill_exit_status"] == 0, values
    assert values["selfhost_backup_last_drill_success_timestamp_seconds"] >= backup_metrics[
        "selfhost_backup_last_success_timestamp_seconds"]
    assert 0 <= values["selfhost_backup_last_drill_duration_seconds"] < 300
    for name, value in backup_metrics.items():
        if name not in DRILL_METRICS:
            assert values[name] == value, name
    entry = status_of(host, provider, "local")
    assert entry["ok"] is True and entry["drill"]["result"] == "success", entry
    assert entry["drill"]["service"] == drill_unit(tool) and entry["drill"]["duration"] is not None, entry
    # Other instances' state is theirs (restic's instance full fails on purpose): this instance's line counts.
    line = host.run("selfhost-backup status").stdout
    assert re.search(rf"^{provider} +local +.*, drill [0-9]+s ago \(success, took [0-9]+s\), next run .*: OK$", line,
                     re.M), line

    # By hand, as root: the same steps, the same check.
    by_hand = host.run(f"{provider}-restore-local drill latest")
    assert by_hand.rc == 0, by_hand.stderr
    assert "drill: scratch copy" in by_hand.stdout and "passed" in by_hand.stderr
    assert read(host, tool) == rows


def test_a_cut_dump_backs_up_fine_and_its_drill_fails_reported(host, tool, scenario):
    """A producer that cuts its dump and still exits 0 makes a backup that succeeds; its drill fails: the unit
    fails, the notification runs for the drill unit, the metrics keep the last good drill, the monitor gets
    fail, selfhost-backup status says DRILL FAILED. A good backup after it drills fine again."""
    provider = tool.provider
    expect(host, tool, "all the rows of a good dump\n")
    backup_ok(host, tool, "local")
    drill_ok(host, tool)
    good = metrics_of(host, provider, "local")
    server = server_host(scenario[tool.server_var])
    check = ping_check(host, scenario)
    pings_before = len(pings_seen(server, check))
    notified = f"/var/lib/{provider}-notified.{drill_unit(tool)}"
    host.check_output(f"rm -f {notified}")
    flags(host, tool, "cut-dump")
    try:
        backup_ok(host, tool, "local")  # "fine": backup_cmd exited 0
    finally:
        flags(host, tool)
    # The ping of that backup's success first, then the drill's.
    wait_for_pings(server, check, pings_before + 2)
    pings_before = len(pings_seen(server, check))
    result = drill(host, tool)
    log = last_run_log(host, drill_unit(tool), "drill failed")
    assert result.rc != 0, log
    assert "drill failed: drill_cmd exited 1" in log, log
    assert host.run(f"systemctl is-failed {drill_unit(tool)}").stdout.strip() == "failed"
    text = host.run(f"timeout 30 sh -c 'until [ -s {notified} ]; do sleep 0.5; done'; cat {notified}").stdout
    assert f"SELFHOST_BACKUP_UNIT={drill_unit(tool)}" in text and "SELFHOST_BACKUP_INSTANCE=local" in text, text
    assert "drill failed" in text.split("---", 1)[1], text
    values = metrics_of(host, provider, "local")
    assert values["selfhost_backup_last_drill_exit_status"] == 1, values
    assert values["selfhost_backup_last_drill_success_timestamp_seconds"] == good[
        "selfhost_backup_last_drill_success_timestamp_seconds"]
    assert values["selfhost_backup_last_exit_status"] == 0, values  # the backup itself succeeded
    seen = wait_for_pings(server, check, pings_before + 1)
    assert seen[pings_before:] == ["fail"], seen
    status = host.run("selfhost-backup status")
    assert status.rc == 1 and re.search(rf"^{provider} +local +.*, drill .*\(exit-code, took .*: DRILL FAILED$",
                                        status.stdout, re.M), status.stdout
    assert status_of(host, provider, "local")["problems"] == ["drill failed"]

    # The next good backup drills fine, and the instance is ok again.
    host.check_output(f"rm -f {notified}")
    backup_ok(host, tool, "local")
    drill_ok(host, tool)
    assert status_of(host, provider, "local")["ok"] is True
    assert metrics_of(host, provider, "local")["selfhost_backup_last_drill_exit_status"] == 0
    assert not host.file(notified).exists


def test_a_drill_of_a_snapshot_that_does_not_exist_fails_clearly_and_changes_nothing(host, tool):
    provider = tool.provider
    backup_ok(host, tool, "local")
    existing = snapshots(host, tool, "local")
    if provider == "restic":
        missing, word = "deadbeef", "snapshot"
    else:
        missing, word = re.sub(r"\d{4}-\d{2}-\d{2}T[\d:.]+$", "2000-01-01T00:00:00.000000", existing[-1]), "archive"
    live = read(host, tool)
    result = host.run(f"{provider}-restore-local drill {shlex.quote(missing)}")
    assert result.rc == 1, result.stderr
    assert (f"no {word} '{missing}' of instance local (see '{provider}-restore-local snapshots'): nothing was "
            "drilled") in result.stderr
    assert "drill: scratch copy" not in result.stdout
    assert snapshots(host, tool, "local") == existing and read(host, tool) == live


def test_a_drill_waits_for_the_running_backup_naming_it(host, tool):
    """The drill never runs beside the instance's backup: started during one, it waits (lock_wait 30) and says
    for what, then passes on the new snapshot."""
    provider = tool.provider
    expect(host, tool, "rows of the backup the drill waited for\n")
    since = now(host)
    flags(host, tool, "slow-tail")
    try:
        host.check_output(f"systemctl start --no-block {tool.unit('local')}")
        wait_for(host, "pgrep -u dbuser -f 'sleep 8' >/dev/null")
        result = drill(host, tool)
    finally:
        flags(host, tool)
        wait_until_inactive(host, tool.unit("local"))
    log = host.check_output(f"journalctl --no-pager -o cat --since {shlex.quote(since)} -u {drill_unit(tool)}")
    assert result.rc == 0, log
    assert re.search(rf"instance local is busy: /usr/local/bin/{provider}-restore-local backup \(pid [0-9]+, "
                     rf"{provider}-backup-local\.service\) holds its lock; waiting up to 30s", log), log
    assert host.run(f"systemctl is-failed {tool.unit('local')}").rc != 0


def test_disabling_the_drill_removes_its_units(host, tool, scenario):
    """drill.enabled false: the drill's service, timer, notification and manifest go (backup_jobs' prune), the
    backup stays, the contract result has no drill_service; enabled again, they are back."""
    provider = tool.provider
    files = [f"{UNIT_DIR}/{provider}-drill-local.{kind}" for kind in ("service", "timer")]
    files += [f"{UNIT_DIR}/{provider}-drill-local-notify.service", f"/var/lib/selfhost-backup/{provider}-drill-local.json"]
    rc, output = variant(host, tool, **{f"{provider}_test_changes": {"local": {"settings": {"drill": {"enabled": False}}}}})
    assert rc == 0, output
    try:
        for path in files:
            assert not host.file(path).exists, path
        assert f"{provider}-drill-local.timer" not in host.check_output("systemctl list-timers --all --no-legend --plain")
        assert host.file(f"{UNIT_DIR}/{tool.unit('local')}").exists
        assert status_of(host, provider, "local")["drill"] is None
    finally:
        rc, output = variant(host, tool)
    assert rc == 0, output
    for path in files:
        assert host.file(path).exists, path
    assert host.service(f"{provider}-drill-local.timer").is_enabled
    drill_ok(host, tool)
