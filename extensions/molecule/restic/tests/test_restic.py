"""The restic provider on real systemd hosts: round trips with exact contents, failures, secrets.

The tests run in file order on each client; the last one removes instances. What the borg and restic scenarios
check the same way is in resources/job_checks.py: a test here calls it and adds what only restic does.
"""

from __future__ import annotations

import re
import shlex
import time

from drills import RESTIC, backup_ok, check_ok, read, restore, write
from drills import snapshots as tool_snapshots
from job_checks import (UNIT_DIR, assert_a_failed_dump_keeps_no_snapshot, assert_a_failed_restore_changes_nothing,
                        assert_bad_settings_refused_and_nothing_changed, assert_latest_per_instance_in_a_shared_repository,
                        assert_remove_yml_removes, assert_restore_script_help_and_misuse, assert_round_trip_by_id_and_latest,
                        assert_secrets_hidden, assert_units_and_timers_installed, watch_a_remote_backup_and_restore)
from provider_checks import (assert_failure_reported, assert_healthy, assert_monitor_down_fails_nothing,
                             assert_pending_after_converge, notified_path, server_host, status_of)

testinfra_hosts = ["ansible://clients"]

DATA = RESTIC.data_dir
INSTANCES = ("local", "second", "shared_a", "shared_b", "remote", "s3", "ugly")


def snapshots(host, instance: str) -> list[str]:
    """Short ids of the instance's snapshots, oldest first."""
    return tool_snapshots(host, RESTIC, instance)


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
    assert_units_and_timers_installed(host, RESTIC, INSTANCES)
    service = host.file(f"{UNIT_DIR}/restic-backup-local.service").content_string
    # monitoring.metrics_directory and ping_url: root hooks around the backup that can never fail it.
    assert "ExecStartPre=-+/bin/bash /usr/local/bin/restic-restore-local started" in service
    assert "ExecStopPost=-+/bin/bash /usr/local/bin/restic-restore-local finished" in service
    assert "TimeoutStartSec=40" in host.file(f"{UNIT_DIR}/restic-backup-remote.service").content_string


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
    assert_round_trip_by_id_and_latest(host, RESTIC, "local", stopped_unit="restic-test-app.service")
    # Everything in the repository belongs to the request's user, also after a restore run by root.
    assert host.check_output("find /srv/restic/local ! -user dbuser | wc -l") == "0"
    assert host.file(f"{DATA}/app.txt").user == "dbuser"


def test_failed_dump_keeps_no_snapshot(host, scenario):
    assert_a_failed_dump_keeps_no_snapshot(host, RESTIC, scenario)


def test_a_monitor_that_is_down_never_fails_the_backup(host, scenario):
    assert_monitor_down_fails_nothing(host, server_host(scenario["restic_test_server"]), scenario, "restic", "local")


def test_failed_restore_fails_and_restarts_units(host):
    # A snapshot that does not exist: the restore command never ran.
    assert_a_failed_restore_changes_nothing(host, RESTIC, "0123abcd")


def test_retention_keeps_the_last_three(host):
    newest = []
    for number in range(4):
        write(host, RESTIC, f"retention {number}\n")
        backup_ok(host, RESTIC, "local")
        newest.append(snapshots(host, "local")[-1])
    assert len(set(newest)) == 4
    # keep_last 3: the three newest stay, every older one (also from earlier tests) is gone.
    assert snapshots(host, "local") == newest[-3:]
    assert restore(host, RESTIC, "local", "latest").rc == 0
    assert read(host, RESTIC) == "retention 3\n"


def test_check_job_runs(host):
    check_ok(host, RESTIC, "local")
    journal = host.check_output("journalctl --no-pager -o cat -u restic-backup-local-check.service")
    assert "no errors were found" in journal


def test_one_request_into_two_repositories(host):
    local_before = snapshots(host, "local")
    write(host, RESTIC, "second repository\n")
    backup_ok(host, RESTIC, "second")
    write(host, RESTIC, "changed\n")
    assert restore(host, RESTIC, "second", "latest").rc == 0
    assert read(host, RESTIC) == "second repository\n"
    assert snapshots(host, "local") == local_before
    assert host.file("/srv/restic/second/config").user == "dbuser"


def test_shared_repository_latest_per_instance(host):
    count_a, count_b = len(snapshots(host, "shared_a")), len(snapshots(host, "shared_b"))
    assert_latest_per_instance_in_a_shared_repository(host, RESTIC)
    # Listing is per instance too: each sees only its own snapshots.
    assert len(snapshots(host, "shared_a")) == count_a + 2
    assert len(snapshots(host, "shared_b")) == count_b + 1
    # An id of the other instance in the same repository is refused, and nothing is restored.
    foreign = snapshots(host, "shared_b")[-1]
    refused = restore(host, RESTIC, "shared_a", foreign)
    assert refused.rc != 0
    assert f"no snapshot '{foreign}' of instance shared_a" in refused.stderr
    assert read(host, RESTIC) == "shared a two\n"
    assert host.file("/srv/restic/shared/config").user == "dbuser"


def test_remote_rest_repository_round_trip(host):
    assert_round_trip_by_id_and_latest(host, RESTIC, "remote", ("remote one\n", "remote two\n"))


def test_s3_repository_round_trip(host, scenario):
    """Instance s3 backs up to a real S3 server (rclone serve s3 --auth-key on the server container), its key pair
    handed over as environment_secrets: a restore by id and latest bring back the exact contents. The repository
    is objects in the server's bucket, and the key pair is root's only on the host."""
    assert_round_trip_by_id_and_latest(host, RESTIC, "s3", ("s3 one\nrow 2\n", "s3 two\n\ttabs and 100% $HOME\n"))
    server = server_host(scenario["restic_test_server"])
    prefix = f"/srv/s3/{scenario['restic_test_s3_bucket']}/{host.backend.get_hostname()}"
    assert server.file(f"{prefix}/config").is_file
    assert len(server.check_output(f"ls {prefix}/snapshots").split()) == len(snapshots(host, "s3"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        secret_file = host.file(f"/etc/selfhost-backup/restic/s3/env.{name}")
        assert secret_file.user == "root" and secret_file.mode == 0o600, name


def test_a_wrong_s3_secret_fails_loudly_within_its_timeout_and_loses_nothing(host):
    """The S3 secret key on the host is wrong (as when the server's key was rotated and the host's was not): the
    backup fails on its own, restic 0.14 at once, restic 0.18 (which retries for 15 minutes) at limits.timeout
    (30 s). The journal and the failure notification name the refused signature and status says FAILED. With the
    right key back, every snapshot is still there, latest restores the last good content and backups go on."""
    unit = RESTIC.unit("s3")
    secret = "/etc/selfhost-backup/restic/s3/env.AWS_SECRET_ACCESS_KEY"
    write(host, RESTIC, "s3 before the wrong secret\n")
    backup_ok(host, RESTIC, "s3")
    before = snapshots(host, "s3")
    host.check_output(f"rm -f {notified_path('restic', 's3')} && cp -p {secret} /root/s3-secret.saved")
    write(host, RESTIC, "s3 never backed up\n")
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    started = time.monotonic()
    try:
        host.check_output(f"printf wrong-s3-secret > {secret}")
        result = host.run(f"timeout 120 systemctl start --wait {unit}")
    finally:
        host.check_output(f"cp -p /root/s3-secret.saved {secret} && rm -f /root/s3-secret.saved")
    took = time.monotonic() - started
    journal = host.check_output(f"journalctl --no-pager -o cat --since {shlex.quote(since)} -u {unit}")
    assert result.rc not in (0, 124), journal
    assert took < 30 + 20, (took, journal)
    expected = "timeout" if restic_version(host) >= (0, 17, 0) else "exit-code"
    assert host.check_output(f"systemctl show -P Result {unit}") == expected, journal
    assert "The request signature we calculated does not match the signature you provided" in journal, journal
    assert_failure_reported(host, "restic", "s3", result=expected,
                            log_text="The request signature we calculated does not match")
    assert snapshots(host, "s3") == before
    assert restore(host, RESTIC, "s3", "latest").rc == 0
    assert read(host, RESTIC) == "s3 before the wrong secret\n"
    write(host, RESTIC, "s3 after the right secret is back\n")
    backup_ok(host, RESTIC, "s3")
    assert_healthy(host, "restic", "s3")
    assert snapshots(host, "s3")[:-1] == before
    assert restore(host, RESTIC, "s3", before[-1]).rc == 0
    assert read(host, RESTIC) == "s3 before the wrong secret\n"


def test_secrets_not_in_units_ps_or_journal(host, scenario):
    seen, restore_seen = watch_a_remote_backup_and_restore(host, RESTIC, "args")
    assert "restic" in seen and "backup" in seen, seen
    secrets = ("restic_test_passphrase", "restic_test_rest_password", "ping_monitor_secret", "restic_test_s3_secret")
    assert_secrets_hidden(host, RESTIC, scenario, secrets, ("passphrase", "env.RESTIC_REPOSITORY"), seen, restore_seen)


def test_restore_script_help_and_misuse(host):
    assert_restore_script_help_and_misuse(host, RESTIC)


def test_bad_settings_fail_on_the_controller_and_change_nothing(host, scenario):
    assert_bad_settings_refused_and_nothing_changed(host, RESTIC, scenario,
                                                    ("passphrase_file", "retention.keep_daily", "colour"))


def test_disabled_and_vanished_instances_are_removed(host):
    stray = "/etc/selfhost-backup/restic/local/env.DROPPED_SECRET"
    host.check_output(f"printf old > {stray} && chmod 0600 {stray}")
    # Repositories are never deleted.
    assert_remove_yml_removes(host, RESTIC, ("second", "shared_b", "shared_a", "remote"), ("second", "shared"))
    assert host.file(f"{UNIT_DIR}/restic-backup-local.service").exists
    # A secret no longer in the settings is removed; the wanted ones stay.
    assert not host.file(stray).exists
    assert host.file("/etc/selfhost-backup/restic/local/passphrase").exists
