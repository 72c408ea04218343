"""Checks the restic and borg scenarios share: the failure notification (monitoring.on_failure) and
selfhost-backup status. Each scenario's conftest puts this directory on sys.path."""

from __future__ import annotations

import json
import re


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


def assert_failure_reported(host, provider: str, instance: str) -> None:
    """After a failed backup: OnFailure= ran the administrator's command with what failed and the failed
    run's log, and selfhost-backup status says FAILED and exits 1."""
    path = notified_path(provider, instance)
    notified = host.run(f"timeout 30 sh -c 'until [ -s {path} ]; do sleep 0.5; done'; cat {path}").stdout
    assert f"SELFHOST_BACKUP_INSTANCE={instance}" in notified and f"SELFHOST_BACKUP_PROVIDER={provider}" in notified
    assert f"SELFHOST_BACKUP_UNIT={provider}-backup-{instance}.service" in notified
    # systemd names the result where it tells the OnFailure= unit (MONITOR_SERVICE_RESULT), else "failed".
    assert re.search(r"^SELFHOST_BACKUP_RESULT=(exit-code|failed)$", notified, re.M), notified
    assert "backup failed" in notified.split("---", 1)[1]
    host.check_output(f"rm -f {path}")
    result = host.run("selfhost-backup status")
    line = rf"^{provider} +{re.escape(instance)} +.*\(exit-code\).*: FAILED$"
    assert result.rc == 1 and re.search(line, result.stdout, re.M), result.stdout
    assert status_of(host, provider, instance)["problems"] == ["failed"]
