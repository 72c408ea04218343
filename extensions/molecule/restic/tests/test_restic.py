"""The restic provider on real systemd hosts: round trips with exact contents, failures, secrets.

The tests run in file order on each client; the last one removes instances.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import time

from conftest import SCENARIO_DIR
from provider_checks import (assert_failed_run_monitored, assert_failure_reported, assert_good_run_monitored, assert_healthy,
                             assert_monitor_down_fails_nothing, assert_pending_after_converge, notified_path, ping_check,
                             pings_seen, server_host, status_of)

testinfra_hosts = ["ansible://clients"]

DATA = "/var/lib/restic-test"
UNIT_DIR = "/etc/systemd/system"
INSTANCES = ("local", "second", "shared_a", "shared_b", "remote", "ugly")


def write(host, name: str, content: str) -> None:
    path = f"{DATA}/{name}"
    host.check_output(f"printf %s {shlex.quote(content)} > {path} && chown dbuser {path}")


def read(host, name: str) -> str:
    """The exact content (check_output would strip a trailing newline)."""
    return base64.b64decode(host.check_output(f"base64 -w0 {DATA}/{name}")).decode()


def backup(host, instance: str):
    return host.run(f"systemctl start --wait restic-backup-{instance}.service")


def backup_ok(host, instance: str) -> None:
    result = backup(host, instance)
    assert result.rc == 0, host.run(f"journalctl --no-pager -n 40 -u restic-backup-{instance}.service").stdout


def snapshots(host, instance: str) -> list[str]:
    """Short ids of the instance's snapshots, oldest first."""
    out = host.check_output(f"restic-restore-{instance} snapshots")
    return re.findall(r"^([0-9a-f]{8})\s", out, re.M)


def backup_new_id(host, instance: str) -> str:
    before = set(snapshots(host, instance))
    backup_ok(host, instance)
    new = [sid for sid in snapshots(host, instance) if sid not in before]
    assert len(new) == 1, new
    return new[0]


def restore(host, instance: str, which: str):
    return host.run(f"restic-restore-{instance} restore {which}")


def restic_version(host) -> tuple[int, ...]:
    out = host.check_output("restic version")
    return tuple(int(part) for part in re.search(r"restic (\d+)\.(\d+)\.(\d+)", out).groups())


def test_status_right_after_the_converge_is_pending(host):
    assert_pending_after_converge(host, "restic", INSTANCES + ("full",))


def test_a_full_repository_fails_the_backup_at_once_instead_of_hanging(host):
    """Instance "full" backs up 64 MiB of random data into a repository on a 2 MiB file system. The run fails on
    its own within seconds, long before its limits.timeout (60 s) and this test's limit (120 s), names the
    cause and is reported; nothing is left running. restic 0.18 (Debian 13) used to wait for the dump for ever
    (restic issue 5683); the legacy pipe of restic 0.14 (Debian 12) must not hang either."""
    unit = "restic-backup-full.service"
    assert host.run("mountpoint -q /srv/restic-full").rc == 0
    host.check_output(f"rm -f {notified_path('restic', 'full')}")
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    started = time.monotonic()
    result = host.run(f"timeout 120 systemctl start --wait {unit}")
    took = time.monotonic() - started
    journal = host.check_output(f"journalctl --no-pager -o cat --since {shlex.quote(since)} -u {unit}")
    assert result.rc not in (0, 124), journal
    assert host.check_output(f"systemctl show -P Result {unit}") == "exit-code", journal
    assert took < 45, (took, journal)
    assert "no space left on device" in journal, journal
    assert "backup failed" in journal and "no snapshot kept" in journal, journal
    if restic_version(host) >= (0, 17, 0):
        assert "the repository refused the backup: stopping restic" in journal, journal
    assert host.check_output(f"systemctl is-failed {unit}") == "failed"
    # Nothing of the run is left: no restic, no dump, no lock in the repository.
    assert host.run("pgrep -u dbuser -f 'head -c 67108864|restic '").rc == 1, host.run("ps -ef").stdout
    assert host.check_output("ls -A /srv/restic-full/repo/locks") == ""
    assert snapshots(host, "full") == []
    notified = host.run(f"timeout 30 sh -c 'until [ -s {notified_path('restic', 'full')} ]; do sleep 0.5; done'; "
                        f"cat {notified_path('restic', 'full')}").stdout
    # systemd names the result where it tells the OnFailure= unit, else the notification says "failed".
    assert re.search(r"^SELFHOST_BACKUP_RESULT=(exit-code|failed)$", notified, re.M), notified
    assert "no space left on device" in notified.split("---", 1)[1], notified
    entry = status_of(host, "restic", "full")
    assert entry["problems"] == ["failed", "late"] and entry["running"] is False, entry


def test_units_and_timers_are_installed(host):
    listed = host.check_output("systemctl list-timers --all --no-legend --plain")
    for instance in INSTANCES:
        assert f"restic-backup-{instance}.timer" in listed
        assert host.service(f"restic-backup-{instance}.timer").is_enabled
        assert host.file(f"/usr/local/bin/restic-restore-{instance}").mode == 0o755
    assert "restic-backup-local-check.timer" in listed
    assert not host.file(f"{UNIT_DIR}/restic-backup-retired.service").exists
    timer = host.file(f"{UNIT_DIR}/restic-backup-local.timer").content_string
    assert "OnCalendar=*-*-* 03:00:00" in timer and "RandomizedDelaySec=60" in timer
    service = host.file(f"{UNIT_DIR}/restic-backup-local.service").content_string
    assert "User=dbuser" in service and "StartLimitIntervalSec=0" in service
    assert "Nice=10" in service and "IOSchedulingClass=idle" in service
    assert "LoadCredential=passphrase:/etc/selfhost-backup/restic/local/passphrase" in service
    assert "ReadWritePaths=/srv/restic/local" in service
    # monitoring.metrics_directory and ping_url: root hooks around the backup that can never fail it.
    assert "ExecStartPre=-+/bin/bash /usr/local/bin/restic-restore-local started" in service
    assert "ExecStopPost=-+/bin/bash /usr/local/bin/restic-restore-local finished" in service
    assert "TimeoutStartSec=40" in host.file(f"{UNIT_DIR}/restic-backup-remote.service").content_string
    assert host.run(f"systemd-analyze verify {UNIT_DIR}/restic-backup-local.service "
                    f"{UNIT_DIR}/restic-backup-local-check.service").rc == 0


def test_pinned_binary_on_debian12_distribution_package_on_debian13(host):
    script = host.file("/usr/local/bin/restic-restore-local").content_string
    if host.system_info.codename == "bookworm":
        link = host.file("/usr/local/bin/restic")
        assert link.is_symlink
        assert re.fullmatch(r"/usr/local/lib/selfhost-backup/restic-[0-9a-f]{12}/restic", link.linked_to)
        assert host.file(link.linked_to).mode == 0o755
        assert "readonly RESTIC=/usr/local/bin/restic" in script
    else:
        assert not host.file("/usr/local/bin/restic").exists
        assert "readonly RESTIC=/usr/bin/restic" in script


def test_command_lines_follow_the_restic_version(host):
    script = host.file("/usr/local/bin/restic-restore-local").content_string
    # The restore script holds the instance's data; restic.sh, installed beside job.sh, sequences it.
    if restic_version(host) >= (0, 17, 0):
        assert "readonly RESTIC_STDIN_FROM_COMMAND=yes" in script and "--stdin-from-command" in script
    else:
        assert "readonly RESTIC_STDIN_FROM_COMMAND=''" in script and "--stdin-from-command" not in script
    assert ("--retry-lock 30s" in script) == (restic_version(host) >= (0, 16, 0))
    assert "--tag selfhost-backup:local" in script


def test_round_trip_by_id_and_latest(host):
    write(host, "app.txt", "app one\nline 2\n")
    first = backup_new_id(host, "local")
    write(host, "app.txt", "app two\n\ttabs and 100% $HOME\n")
    backup_new_id(host, "local")
    host.check_output(f"rm -f {DATA}/app.txt")
    started = host.check_output("systemctl show -P ActiveEnterTimestampMonotonic restic-test-app.service")

    result = restore(host, "local", first)
    assert result.rc == 0, result.stderr
    assert read(host, "app.txt") == "app one\nline 2\n"
    result = restore(host, "local", "latest")
    assert result.rc == 0, result.stderr
    assert read(host, "app.txt") == "app two\n\ttabs and 100% $HOME\n"
    # stop_units: the application was stopped and started again.
    assert "stopping restic-test-app.service" in result.stderr
    assert host.service("restic-test-app.service").is_running
    assert host.check_output("systemctl show -P ActiveEnterTimestampMonotonic restic-test-app.service") != started
    # Everything in the repository belongs to the request's user, also after a restore run by root.
    assert host.check_output("find /srv/restic/local ! -user dbuser | wc -l") == "0"
    assert host.file(f"{DATA}/app.txt").user == "dbuser"


NOTIFIED = notified_path("restic", "local")


def test_failed_dump_keeps_no_snapshot(host, scenario):
    server = server_host(scenario["restic_test_server"])
    write(host, "app.txt", "good content\n")
    backup_ok(host, "local")
    assert_healthy(host, "restic", "local")
    before = snapshots(host, "local")
    good = assert_good_run_monitored(host, server, scenario, "restic", "local", len(before))
    pings_before = len(pings_seen(server, ping_check(host, scenario)))
    write(host, "app.txt", "broken content\n")
    host.check_output(f"rm -f {NOTIFIED} && touch {DATA}/fail-backup")
    try:
        result = backup(host, "local")
    finally:
        host.check_output(f"rm -f {DATA}/fail-backup")
    assert result.rc != 0
    assert host.run("systemctl is-failed restic-backup-local.service").stdout.strip() == "failed"
    assert_failure_reported(host, "restic", "local")
    assert_failed_run_monitored(host, server, scenario, "restic", "local", good, pings_before)
    assert snapshots(host, "local") == before
    assert restore(host, "local", "latest").rc == 0
    assert read(host, "app.txt") == "good content\n"


def test_a_monitor_that_is_down_never_fails_the_backup(host, scenario):
    assert_monitor_down_fails_nothing(host, server_host(scenario["restic_test_server"]), scenario, "restic", "local")


def test_failed_restore_fails_and_restarts_units(host):
    write(host, "app.txt", "untouched\n")
    result = restore(host, "local", "0123abcd")
    assert result.rc != 0
    # A snapshot that does not exist: the restore command never ran.
    assert read(host, "app.txt") == "untouched\n"
    assert host.service("restic-test-app.service").is_running
    assert restore(host, "local", "../etc").rc != 0


def test_retention_keeps_the_last_three(host):
    newest = []
    for number in range(4):
        write(host, "app.txt", f"retention {number}\n")
        backup_ok(host, "local")
        newest.append(snapshots(host, "local")[-1])
    assert len(set(newest)) == 4
    # keep_last 3: the three newest stay, every older one (also from earlier tests) is gone.
    assert snapshots(host, "local") == newest[-3:]
    assert restore(host, "local", "latest").rc == 0
    assert read(host, "app.txt") == "retention 3\n"


def test_check_job_runs(host):
    result = host.run("systemctl start --wait restic-backup-local-check.service")
    assert result.rc == 0, host.run("journalctl --no-pager -n 30 -u restic-backup-local-check.service").stdout
    journal = host.check_output("journalctl --no-pager -o cat -u restic-backup-local-check.service")
    assert "no errors were found" in journal


def test_one_request_into_two_repositories(host):
    local_before = snapshots(host, "local")
    write(host, "app.txt", "second repository\n")
    backup_ok(host, "second")
    write(host, "app.txt", "changed\n")
    assert restore(host, "second", "latest").rc == 0
    assert read(host, "app.txt") == "second repository\n"
    assert snapshots(host, "local") == local_before
    assert host.file("/srv/restic/second/config").user == "dbuser"


def test_shared_repository_latest_per_instance(host):
    count_a, count_b = len(snapshots(host, "shared_a")), len(snapshots(host, "shared_b"))
    write(host, "app.txt", "shared a one\n")
    write(host, "other.txt", "shared b one\n")
    backup_ok(host, "shared_a")
    backup_ok(host, "shared_b")
    write(host, "app.txt", "shared a two\n")
    backup_ok(host, "shared_a")
    host.check_output(f"rm -f {DATA}/app.txt {DATA}/other.txt")
    assert restore(host, "shared_b", "latest").rc == 0
    assert restore(host, "shared_a", "latest").rc == 0
    assert read(host, "other.txt") == "shared b one\n"
    assert read(host, "app.txt") == "shared a two\n"
    # Listing is per instance too: each sees only its own snapshots.
    assert len(snapshots(host, "shared_a")) == count_a + 2
    assert len(snapshots(host, "shared_b")) == count_b + 1
    # An id of the other instance in the same repository is refused, and nothing is restored.
    foreign = snapshots(host, "shared_b")[-1]
    refused = restore(host, "shared_a", foreign)
    assert refused.rc != 0
    assert f"no snapshot '{foreign}' of instance shared_a" in refused.stderr
    assert read(host, "app.txt") == "shared a two\n"
    assert host.file("/srv/restic/shared/config").user == "dbuser"


def test_remote_rest_repository_round_trip(host):
    write(host, "app.txt", "remote one\n")
    first = backup_new_id(host, "remote")
    write(host, "app.txt", "remote two\n")
    backup_new_id(host, "remote")
    host.check_output(f"rm -f {DATA}/app.txt")
    assert restore(host, "remote", first).rc == 0
    assert read(host, "app.txt") == "remote one\n"
    assert restore(host, "remote", "latest").rc == 0
    assert read(host, "app.txt") == "remote two\n"


def test_secrets_not_in_units_ps_or_journal(host, scenario):
    secrets = [scenario["restic_test_passphrase"], scenario["restic_test_rest_password"], scenario["ping_monitor_secret"]]
    host.check_output(f"touch {DATA}/slow")
    try:
        host.check_output("systemctl start --no-block restic-backup-remote.service")
        # The backup_cmd sleeps 4 s first: sample every process's command line meanwhile.
        seen = host.check_output("for i in $(seq 1 12); do ps -eo args; sleep 0.25; done")
        host.run("timeout 60 sh -c 'while [ \"$(systemctl is-active restic-backup-remote.service)\" = activating ]; "
                 "do sleep 0.5; done'")
    finally:
        host.check_output(f"rm -f {DATA}/slow")
    assert "restic" in seen and "backup" in seen, seen
    restore_seen = host.check_output(
        "(restic-restore-remote restore latest >/dev/null 2>&1 &) ; for i in $(seq 1 8); do ps -eo args; sleep 0.25; done; sleep 2")
    files = host.check_output(f"cat {UNIT_DIR}/restic-backup-* /usr/local/bin/restic-restore-*")
    journal = host.check_output("journalctl --no-pager -o cat")
    for secret in secrets:
        assert secret not in seen
        assert secret not in restore_seen
        assert secret not in files
        assert secret not in journal
    for path in ("passphrase", "env.RESTIC_REPOSITORY"):
        secret_file = host.file(f"/etc/selfhost-backup/restic/remote/{path}")
        assert secret_file.user == "root" and secret_file.mode == 0o600
    assert host.file("/etc/selfhost-backup/restic/remote").mode == 0o700
    ping_url = host.file("/etc/selfhost-backup/restic/local/ping_url")
    assert ping_url.user == "root" and ping_url.mode == 0o600 and scenario["ping_monitor_secret"] in ping_url.content_string


def test_restore_script_help_and_misuse(host):
    helped = host.run("restic-restore-local --help")
    assert helped.rc == 0 and "restore latest" in helped.stdout
    assert host.run("restic-restore-local").rc == 2
    assert host.run("restic-restore-local backup").rc != 0
    assert host.run("setpriv --reuid=dbuser --regid=dbuser --init-groups restic-restore-local snapshots").rc != 0


def _host_state(host) -> str:
    return host.check_output(
        f"ls -la --time-style=full-iso {UNIT_DIR} /usr/local/bin /var/lib/selfhost-backup /etc/selfhost-backup/restic; "
        "systemctl list-units --type=timer --all --plain --no-legend | awk '{print $1, $2, $3, $4}' | sort; "
        "test ! -e /root/bad-settings-marker && echo no-marker"
    )


def _playbook(host, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"],
         "--limit", host.backend.get_hostname(), str(SCENARIO_DIR / name)],
        capture_output=True, text=True, check=False,
    )


def test_bad_settings_fail_on_the_controller_and_change_nothing(host, scenario):
    before = _host_state(host)
    run = _playbook(host, "bad_settings.yml")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "restic_instances.bad.settings.passphrase_file" in output, output
    assert "restic_instances.bad.settings.retention.keep_daily" in output, output
    assert "restic_instances.bad.settings.colour" in output, output
    assert scenario["restic_test_passphrase"] not in output
    assert "changed=0" in output, output
    assert _host_state(host) == before
    assert "no-marker" in before


def test_disabled_and_vanished_instances_are_removed(host):
    stray = "/etc/selfhost-backup/restic/local/env.DROPPED_SECRET"
    host.check_output(f"printf old > {stray} && chmod 0600 {stray}")
    run = _playbook(host, "remove.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    for instance in ("second", "shared_b", "shared_a", "remote"):
        assert not host.file(f"{UNIT_DIR}/restic-backup-{instance}.service").exists, instance
        assert not host.file(f"/usr/local/bin/restic-restore-{instance}").exists, instance
        assert not host.file(f"/etc/selfhost-backup/restic/{instance}").exists, instance
        assert not host.file(f"/var/lib/selfhost-backup/restic-backup-{instance}.json").exists, instance
    assert host.file(f"{UNIT_DIR}/restic-backup-local.service").exists
    # A secret no longer in the settings is removed; the wanted ones stay.
    assert not host.file(stray).exists
    assert host.file("/etc/selfhost-backup/restic/local/passphrase").exists
    # Repositories are never deleted.
    assert host.file("/srv/restic/second/config").exists
    assert host.file("/srv/restic/shared/config").exists
