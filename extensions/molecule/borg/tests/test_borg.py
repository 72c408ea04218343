"""The borg provider on real systemd hosts: round trips with exact contents, failures, SSH, secrets.

The tests run in file order on each client; the last one removes instances. What the borg and restic scenarios
check the same way is in resources/job_checks.py: a test here calls it and adds what only borg does.
"""

from __future__ import annotations

import os
import re
import shlex

import testinfra

from drills import BORG, backup, backup_new, backup_ok, check_ok, read, restore, snapshots, write
from job_checks import (UNIT_DIR, assert_a_failed_dump_keeps_no_snapshot, assert_a_failed_restore_changes_nothing,
                        assert_bad_settings_refused_and_nothing_changed, assert_latest_per_instance_in_a_shared_repository,
                        assert_remove_yml_removes, assert_restore_script_help_and_misuse, assert_round_trip_by_id_and_latest,
                        assert_secrets_hidden, assert_units_and_timers_installed, watch_a_remote_backup_and_restore)
from provider_checks import assert_monitor_down_fails_nothing, assert_pending_after_converge, server_host

testinfra_hosts = ["ansible://clients"]

DATA = BORG.data_dir
INSTANCES = ("local", "shared_a", "shared_b", "remote", "ugly")


def archives(host, instance: str) -> list[str]:
    """The instance's archives, oldest first."""
    return snapshots(host, BORG, instance)


def borg_version(host) -> tuple[int, ...]:
    return tuple(int(part) for part in re.search(r"(\d+)\.(\d+)\.(\d+)", host.check_output("borg --version")).groups())


def test_status_right_after_the_converge_is_pending(host):
    """Before the first backup, which creates the repositories, status used to say UNREADABLE."""
    assert_pending_after_converge(host, "borg", INSTANCES)


def test_units_and_timers_are_installed(host):
    listed = assert_units_and_timers_installed(host, BORG, INSTANCES)
    assert "borg-backup-remote-check.timer" in listed
    remote = host.file(f"{UNIT_DIR}/borg-backup-remote.service").content_string
    assert "LoadCredential=ssh_key:/etc/selfhost-backup/borg/remote/ssh_key" in remote
    assert "LoadCredential=known_hosts:/etc/selfhost-backup/borg/remote/known_hosts" in remote


def test_command_lines(host):
    assert borg_version(host) >= (1, 2, 0)
    script = host.file("/usr/local/bin/borg-restore-local").content_string
    assert "--content-from-command --stdin-name app.txt" in script
    assert "BORG_EXIT_CODES=legacy" in host.file("/usr/local/lib/selfhost-backup/borg.sh").content_string
    assert "--upload-ratelimit 100000" in script and "--lock-wait 30" in script
    assert "check --repository-only --max-duration 600" in script
    remote = host.file("/usr/local/bin/borg-restore-remote").content_string
    assert "StrictHostKeyChecking=yes" in remote and "check --verify-data" in remote
    assert "StrictHostKeyChecking=no" not in host.check_output(
        f"cat {UNIT_DIR}/borg-backup-* /usr/local/bin/borg-restore-*")


def test_first_backup_initialises_the_repository(host):
    # Before the first backup there is no repository: listing says so and fails.
    for instance, message in (("local", "not a valid repository"), ("remote", "does not exist")):
        result = host.run(f"borg-restore-{instance} snapshots")
        assert result.rc != 0 and message in result.stderr, result.stderr
        assert restore(host, BORG, instance, "latest").rc != 0
    backup_ok(host, BORG, "local")
    backup_ok(host, BORG, "remote")
    journal = host.check_output("journalctl --no-pager -o cat -u borg-backup-local.service -u borg-backup-remote.service")
    assert journal.count("initialised the repository (encryption repokey-blake2)") == 2
    assert host.file("/srv/borg/local/config").user == "dbuser"
    # A second backup finds it ("already exists") and initialises nothing.
    backup_ok(host, BORG, "local")
    assert host.check_output("journalctl --no-pager -o cat -u borg-backup-local.service").count("initialised") == 1
    assert len(archives(host, "local")) == 2 and len(archives(host, "remote")) == 1
    # The archives carry the instance and the host: <instance>@<inventory hostname>-<UTC time>.
    assert all(name.startswith(f"local@{host.backend.get_hostname()}-") for name in archives(host, "local"))


def _journal_count(host, instance: str, text: str) -> int:
    return host.check_output(f"journalctl --no-pager -o cat -u borg-backup-{instance}.service").count(text)


def test_a_vanished_local_repository_fails_and_is_not_created_again(host):
    # As after a wiped disk: the directory is back (the role recreates it), the repository is gone.
    host.check_output("mv /srv/borg/local /srv/borg/local.away && install -d -o dbuser -m 0700 /srv/borg/local")
    try:
        result = backup(host, BORG, "local")
        assert result.rc != 0
        assert host.run("systemctl is-failed borg-backup-local.service").stdout.strip() == "failed"
        assert host.check_output("ls -A /srv/borg/local") == ""
        assert _journal_count(host, "local", "initialised the repository") == 1
        assert _journal_count(host, "local", "not a valid repository") >= 1
    finally:
        host.check_output("rm -rf /srv/borg/local && mv /srv/borg/local.away /srv/borg/local")
    backup_ok(host, BORG, "local")


def test_a_vanished_remote_repository_fails_and_is_not_created_again(host):
    # As after a server that lost its data: the repository's path is gone on the server.
    server = _server()
    path = f"/srv/borg/{host.backend.get_hostname()}"
    server.check_output(f"mv {path} {path}.away")
    try:
        result = backup(host, BORG, "remote")
        assert result.rc != 0
        assert not server.file(path).exists
        assert _journal_count(host, "remote", "initialised the repository") == 1
    finally:
        server.check_output(f"rm -rf {path} && mv {path}.away {path}")
    backup_ok(host, BORG, "remote")


def test_round_trip_by_name_and_latest(host):
    assert_round_trip_by_id_and_latest(host, BORG, "local", stopped_unit="borg-test-app.service")


def test_everything_belongs_to_the_request_user(host):
    # Also after restores run by root: no root-owned lock, cache or security files.
    assert host.check_output("find /srv/borg/local ! -user dbuser | wc -l") == "0"
    assert host.check_output("find /var/cache/borg-backup-local ! -user dbuser | wc -l") == "0"
    assert host.file("/srv/borg/local/config").user == "dbuser"
    assert host.file(f"{DATA}/app.txt").user == "dbuser"
    # No temporary copy of the secrets is left behind by the interactive restores.
    assert host.run("ls -d /run/borg-restore.* 2>/dev/null").stdout == ""


def test_failed_dump_keeps_no_archive(host, scenario):
    assert_a_failed_dump_keeps_no_snapshot(host, BORG, scenario)
    # Not even a checkpoint archive.
    listed = host.check_output("BORG_PASSCOMMAND='cat /etc/selfhost-backup/borg/local/passphrase' "
                               "BORG_BASE_DIR=/tmp/borg-root borg list --consider-checkpoints --short /srv/borg/local")
    assert "checkpoint" not in listed


def test_a_monitor_that_is_down_never_fails_the_backup(host, scenario):
    assert_monitor_down_fails_nothing(host, server_host(scenario["borg_test_server"]), scenario, "borg", "local")


def test_failed_restore_fails_and_restarts_units(host):
    # An archive name of this instance and host that does not exist: checked before the restore command ran.
    missing = f"local@{host.backend.get_hostname()}-2000-01-01T00:00:00.000000"
    result = assert_a_failed_restore_changes_nothing(host, BORG, missing)
    assert "no archive" in result.stderr
    assert restore(host, BORG, "local", "shared_a-2000-01-01T00:00:00.000000").rc != 0


def _local_borg(host, borg_args: str, stdin: str = "") -> str:
    """borg on the local repository as the request's user (so it leaves no root-owned file there)."""
    return host.check_output(
        "d=$(mktemp -d /run/borg-test.XXXXXX) && cp /etc/selfhost-backup/borg/local/passphrase \"$d\" && "
        "chown -R dbuser \"$d\" && printf %s " + shlex.quote(stdin) + " | setpriv --reuid=dbuser --regid=dbuser "
        "--init-groups env BORG_BASE_DIR=/var/cache/borg-backup-local BORG_PASSCOMMAND=\"cat $d/passphrase\" "
        f"borg {borg_args}; rc=$?; rm -rf \"$d\"; exit $rc")


def _other_host_archive(host, content: str) -> str:
    """An archive of instance local made by another host sharing the repository (named as its job would)."""
    name = "local@other-host-" + host.check_output("date -u +%Y-%m-%dT%H:%M:%S.%6N")
    _local_borg(host, f"create --stdin-name app.txt /srv/borg/local::{name} -", stdin=content)
    return name


def _all_archive_names(host) -> list[str]:
    return _local_borg(host, "list --short /srv/borg/local").split()


def test_retention_keeps_the_last_three_of_this_host_only(host):
    older = _other_host_archive(host, "other host, older\n")
    newest = []
    for number in range(4):
        write(host, BORG, f"retention {number}\n")
        newest.append(backup_new(host, BORG, "local"))
    assert archives(host, "local") == newest[-3:]
    # The other host's archive of the same instance is not this host's to prune.
    assert older in _all_archive_names(host)
    assert restore(host, BORG, "local", "latest").rc == 0
    assert read(host, BORG) == "retention 3\n"


def test_other_hosts_archives_are_never_listed_or_restored(host):
    newer = _other_host_archive(host, "other host, newest in the repository\n")
    assert newer in _all_archive_names(host)
    assert newer not in archives(host, "local")
    # latest is this host's newest archive, although the other host's is newer.
    assert restore(host, BORG, "local", "latest").rc == 0
    assert read(host, BORG) == "retention 3\n"
    refused = restore(host, BORG, "local", newer)
    assert refused.rc != 0 and "not a valid archive" in refused.stderr
    assert read(host, BORG) == "retention 3\n"
    # Everything in the repository still belongs to the request's user.
    assert host.check_output("find /srv/borg/local ! -user dbuser | wc -l") == "0"


def test_check_job_runs(host):
    check_ok(host, BORG, "local")


def test_shared_repository_latest_per_instance(host):
    assert_latest_per_instance_in_a_shared_repository(host, BORG)
    assert len(archives(host, "shared_a")) == 2
    assert len(archives(host, "shared_b")) == 1


def test_remote_ssh_repository_round_trip(host):
    assert_round_trip_by_id_and_latest(host, BORG, "remote", ("remote one\n", "remote two\n"))
    check_ok(host, BORG, "remote")


def _as_job(host, borg_args: str):
    """borg as the job's user with the job's key and pinned host key, outside the units."""
    secrets = "/etc/selfhost-backup/borg/remote"
    return host.run(
        "d=$(mktemp -d /run/borg-test.XXXXXX) && cp " + secrets + "/* \"$d\" && chown -R dbuser \"$d\" && "
        "cp /etc/selfhost-backup/borg/remote/passphrase \"$d/passphrase\" && chown dbuser \"$d/passphrase\" && "
        "setpriv --reuid=dbuser --regid=dbuser --init-groups env HOME=/var/cache/borg-backup-remote "
        "BORG_BASE_DIR=/var/cache/borg-backup-remote BORG_PASSCOMMAND=\"cat $d/passphrase\" "
        "BORG_RSH=\"ssh -F none -i $d/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o UserKnownHostsFile=$d/known_hosts -o StrictHostKeyChecking=yes\" "
        f"borg {borg_args}; rc=$?; rm -rf \"$d\"; exit $rc")


def _server():
    return testinfra.get_host("ansible://borg-server", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def test_remote_key_is_restricted_and_append_only(host, scenario):
    """borg serve --append-only: the client's key can neither destroy the repository nor remove any data.

    A borg delete of an archive through that key only appends a deletion: every segment file stays untouched
    on the server, and the server's admin gets the archive back by rolling back to an earlier transaction.
    """
    server = _server()
    client = host.backend.get_hostname()
    path = f"/srv/borg/{client}"
    login = f"{scenario['borg_test_server_user']}@{scenario['borg_test_server']}"
    repo = f"ssh://{login}{path}"
    before = archives(host, "remote")
    assert before
    segments = server.check_output(f"cd {path} && find data -type f -exec sha256sum {{}} + | sort")
    # The key cannot reach another path on the server, nor run anything but borg serve.
    assert _as_job(host, f"list ssh://{login}/srv/borg/other").rc != 0
    shell = host.run("ssh -F none -i /etc/selfhost-backup/borg/remote/ssh_key -o BatchMode=yes "
                     "-o UserKnownHostsFile=/etc/selfhost-backup/borg/remote/known_hosts -o StrictHostKeyChecking=yes "
                     f"{login} cat /etc/hostname")
    assert "borg-server" not in shell.stdout
    # Destroying the repository is refused.
    destroy = _as_job(host, f"delete --force {repo}")
    assert destroy.rc != 0 and "append-only" in destroy.stdout + destroy.stderr
    # Deleting an archive only appends a deletion (the client sees it gone) ...
    _as_job(host, f"delete {repo}::{before[0]}")
    _as_job(host, f"compact {repo}")
    # ... no segment file was removed or changed on the server ...
    after = server.check_output(f"cd {path} && find data -type f -exec sha256sum {{}} + | sort")
    assert set(segments.splitlines()) <= set(after.splitlines())
    # ... and a rollback to the last transaction before it (on a copy) brings the archive back.
    old = " ".join(line.split()[1] for line in segments.splitlines())
    server.check_output(
        f"rm -rf {path}.rollback && cp -a {path} {path}.rollback && cd {path}.rollback && "
        f"for f in data/*/*; do case \" {old} \" in *\" $f \"*) ;; *) rm -f \"$f\" ;; esac; done && "
        "rm -f index.* hints.* integrity.*")
    listed = server.run(f"BORG_PASSPHRASE={shlex.quote(scenario['borg_test_passphrase'])} "
                        f"BORG_BASE_DIR=/tmp/borg-rollback-{client} borg list --short {path}.rollback")
    assert listed.rc == 0, listed.stderr
    assert before[0] in listed.stdout.split()
    server.check_output(f"rm -rf {path}.rollback /tmp/borg-rollback-{client}")


def test_secrets_not_in_units_ps_or_journal(host, scenario):
    seen, restore_seen = watch_a_remote_backup_and_restore(host, BORG, "user,args")
    assert "borg" in seen and "create" in seen, seen
    # The backup runs as the request's user, borg and ssh included, and so does the restore's borg.
    assert all(line.startswith("dbuser") for line in seen.splitlines() if "borg" in line and "create" in line), seen
    assert all(line.startswith("dbuser") for line in restore_seen.splitlines()
               if "/usr/bin/borg" in line and "extract" in line), restore_seen
    assert_secrets_hidden(host, BORG, scenario, ("borg_test_passphrase", "ping_monitor_secret"),
                          ("passphrase", "ssh_key", "known_hosts"), seen, restore_seen)


def test_restore_script_help_and_misuse(host):
    assert_restore_script_help_and_misuse(host, BORG)


def test_bad_settings_fail_on_the_controller_and_change_nothing(host, scenario):
    assert_bad_settings_refused_and_nothing_changed(host, BORG, scenario, ("passphrase_file", "retention.keep_daily",
                                                                           "colour", "encryption", "ssh", "host"))


def test_disabled_and_vanished_instances_are_removed(host):
    # Repositories are never deleted.
    assert_remove_yml_removes(host, BORG, ("shared_b", "shared_a", "remote"), ("shared",))
    service = host.file(f"{UNIT_DIR}/borg-backup-local.service").content_string
    assert "LoadCredential=passphrase:/etc/borg-test-passphrase-local" in service
    # The stored copy of the passphrase is gone now that it comes from a file.
    assert not host.file("/etc/selfhost-backup/borg/local/passphrase").exists
