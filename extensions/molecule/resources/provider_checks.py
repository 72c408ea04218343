"""Checks the restic and borg scenarios share: the failure notification (monitoring.on_failure) and
selfhost-backup status. Each scenario's conftest puts this directory on sys.path."""

from __future__ import annotations

import json
import os
import re

import testinfra


def notified_path(provider: str, instance: str) -> str:
    """Where the scenarios' on_failure command (see their converge.yml) writes what it was told."""
    return f"/var/lib/{provider}-notified.{provider}-backup-{instance}.service"


def status_of(host, provider: str, instance: str) -> dict:
    """This instance's entry in selfhost-backup status --json."""
    entries = json.loads(host.run("selfhost-backup status --json").stdout)
    return next(entry for entry in entries if entry["provider"] == provider and entry["instance"] == instance)


def assert_healthy(host, provider: str, instance: str) -> None:
    entry = status_of(host, provider, instance)
    assert entry["ok"] is True and entry["next_run"] > entry["last_run"] > 0, entry


def assert_failure_reported(host, provider: str, instance: str, result: str = "exit-code",
                            log_text: str = "backup failed") -> None:
    """After a failed backup: OnFailure= ran the administrator's command with what failed and the failed
    run's log, and selfhost-backup status says FAILED (with systemd's ``result``) and exits 1."""
    path = notified_path(provider, instance)
    notified = host.run(f"timeout 30 sh -c 'until [ -s {path} ]; do sleep 0.5; done'; cat {path}").stdout
    assert f"SELFHOST_BACKUP_INSTANCE={instance}" in notified and f"SELFHOST_BACKUP_PROVIDER={provider}" in notified
    assert f"SELFHOST_BACKUP_UNIT={provider}-backup-{instance}.service" in notified
    # systemd names the result where it tells the OnFailure= unit (MONITOR_SERVICE_RESULT), else "failed".
    assert re.search(rf"^SELFHOST_BACKUP_RESULT=({result}|failed)$", notified, re.M), notified
    assert log_text in notified.split("---", 1)[1], notified
    host.check_output(f"rm -f {path}")
    status = host.run("selfhost-backup status")
    line = rf"^{provider} +{re.escape(instance)} +.*\({result}\).*: FAILED$"
    assert status.rc == 1 and re.search(line, status.stdout, re.M), status.stdout
    assert status_of(host, provider, instance)["problems"] == ["failed"]


def assert_pending_after_converge(host, provider: str, instances: tuple) -> None:
    """Right after the converge, before any run: every instance of the provider is pending, not late or
    unreadable, and selfhost-backup status exits 0."""
    result = host.run("selfhost-backup status --json")
    assert result.rc == 0, result.stdout + result.stderr
    entries = {entry["instance"]: entry for entry in json.loads(result.stdout) if entry["provider"] == provider}
    assert sorted(entries) == sorted(instances), entries
    for entry in entries.values():
        assert entry["ok"] is True and entry["pending"] is True and entry["problems"] == [], entry
        assert entry["result"] == "never run" and entry["newest_snapshot"] is None and entry["error"] == "", entry
    text = host.run("selfhost-backup status")
    assert text.rc == 0, text.stdout
    for instance in instances:
        assert re.search(rf"^{provider} +{re.escape(instance)} +last run - \(never run\), .*: PENDING$", text.stdout,
                         re.M), text.stdout


# ---- monitoring.metrics_directory and monitoring.ping_url (instance "local" of both scenarios) ----

METRICS_DIR = "/var/lib/prometheus/node-exporter"


def server_host(name: str):
    """The scenario's server container (REST or SSH server, and the ping monitor)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


METRIC_LINE = re.compile(r'^(selfhost_backup_[a-z_]+)\{provider="([a-z]+)",name="([^"]+)"\} ([0-9]+)$')


def metrics_of(host, provider: str, instance: str) -> dict:
    """The instance's node-exporter textfile as {metric: value}; every line must be in the exposition format."""
    path = f"{METRICS_DIR}/{provider}-backup-{instance}.prom"
    assert host.file(path).mode == 0o644, path
    values = {}
    for line in host.check_output(f"cat {path}").splitlines():
        if line.startswith("# "):
            continue
        match = METRIC_LINE.match(line)
        assert match and match.group(2, 3) == (provider, instance), line
        values[match.group(1)] = int(match.group(4))
    # Replaced by rename: no temporary file is ever left for the exporter to read.
    assert host.check_output(f"ls -A {METRICS_DIR}").split().count(f"{provider}-backup-{instance}.prom") == 1
    assert ".tmp" not in host.check_output(f"ls -A {METRICS_DIR}")
    return values


def ping_check(host, scenario: dict) -> str:
    """The check id this client pings (see the scenarios' vars.yml)."""
    return f"{host.backend.get_hostname()}-{scenario['ping_monitor_secret']}"


def pings_seen(server, check: str) -> list:
    """What the monitor got and answered for one check, in order: "start", "success" or "fail"; a request the
    monitor did not answer with 200 (or 301, the redirect to the check's directory) counts as "error"."""
    log = server.check_output("journalctl --no-pager -o cat -u ping-monitor.service")
    kinds = {"/start": "start", "/fail": "fail", "": "success"}
    return [kinds[suffix] if status in ("200", "301") else "error"
            for suffix, status in re.findall(rf'"GET /ping/{re.escape(check)}(/start|/fail|) HTTP/1.1" (\d+)', log)]


def wait_for_pings(server, check: str, count: int) -> list:
    """The ExecStopPost= hook pings after the unit is done: give it a moment to arrive."""
    for _attempt in range(40):
        seen = pings_seen(server, check)
        if len(seen) >= count:
            return seen
        server.run("sleep 0.25")
    return pings_seen(server, check)


def assert_good_run_monitored(host, server, scenario: dict, provider: str, instance: str, snapshots: int) -> dict:
    """After a good backup: metrics say success with the instance's snapshot count, the monitor got start and
    success. Returns the metrics."""
    values = metrics_of(host, provider, instance)
    assert values["selfhost_backup_last_exit_status"] == 0, values
    assert values["selfhost_backup_snapshots"] == snapshots, values
    assert values["selfhost_backup_last_added_bytes"] > 0, values
    assert values["selfhost_backup_last_success_timestamp_seconds"] >= values["selfhost_backup_last_attempt_timestamp_seconds"]
    check = ping_check(host, scenario)
    seen = wait_for_pings(server, check, 2)
    assert seen[-2:] == ["start", "success"], seen
    return values


def assert_failed_run_monitored(host, server, scenario: dict, provider: str, instance: str, good: dict,
                                pings_before: int) -> None:
    """After a failed backup: metrics show the failure and keep the last success's figures; the monitor got
    start and fail."""
    values = metrics_of(host, provider, instance)
    assert values["selfhost_backup_last_exit_status"] != 0, values
    assert values["selfhost_backup_last_attempt_timestamp_seconds"] >= good["selfhost_backup_last_attempt_timestamp_seconds"]
    for kept in ("last_success_timestamp_seconds", "last_added_bytes", "snapshots"):
        assert values[f"selfhost_backup_{kept}"] == good[f"selfhost_backup_{kept}"], (kept, values, good)
    seen = wait_for_pings(server, ping_check(host, scenario), pings_before + 2)
    assert seen[pings_before:] == ["start", "fail"], seen


def assert_monitor_down_fails_nothing(host, server, scenario: dict, provider: str, instance: str) -> None:
    """With the monitor stopped, a backup still succeeds; the hooks only log that the pings failed."""
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    server.check_output("systemctl stop ping-monitor.service")
    try:
        result = host.run(f"systemctl start --wait {provider}-backup-{instance}.service")
    finally:
        server.check_output("systemctl start ping-monitor.service")
    assert result.rc == 0, result.stderr
    journal = host.check_output(f"journalctl --no-pager -o cat --since '{since}' -u {provider}-backup-{instance}.service")
    assert "the monitoring ping /start failed (ignored: the backup result stands)" in journal, journal
    assert "the monitoring ping failed (ignored: the backup result stands)" in journal, journal
    assert metrics_of(host, provider, instance)["selfhost_backup_last_exit_status"] == 0
