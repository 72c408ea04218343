"""The borg provider on real systemd hosts: round trips with exact contents, failures, SSH, secrets.

The tests run in file order on each client; the last one removes instances.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess

import testinfra

from conftest import SCENARIO_DIR
from provider_checks import (assert_failed_run_monitored, assert_failure_reported, assert_good_run_monitored,
                             assert_healthy, assert_monitor_down_fails_nothing, assert_pending_after_converge,
                             notified_path, ping_check, pings_seen, server_host)

testinfra_hosts = ["ansible://clients"]

DATA = "/var/lib/borg-test"
UNIT_DIR = "/etc/systemd/system"
INSTANCES = ("local", "shared_a", "shared_b", "remote", "ugly")
ARCHIVE = re.compile(r"^(\S+-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})\s", re.M)


def write(host, name: str, content: str) -> None:
    path = f"{DATA}/{name}"
    host.check_output(f"printf %s {shlex.quote(content)} > {path} && chown dbuser {path}")


def read(host, name: str) -> str:
    """The exact content (check_output would strip a trailing newline)."""
    return base64.b64decode(host.check_output(f"base64 -w0 {DATA}/{name}")).decode()


def backup(host, instance: str):
    return host.run(f"systemctl start --wait borg-backup-{instance}.service")


def backup_ok(host, instance: str) -> None:
    result = backup(host, instance)
    assert result.rc == 0, host.run(f"journalctl --no-pager -n 40 -u borg-backup-{instance}.service").stdout


def archives(host, instance: str) -> list[str]:
    """The instance's archives, oldest first."""
    result = host.run(f"borg-restore-{instance} snapshots")
    assert result.rc == 0, result.stderr
    return ARCHIVE.findall(result.stdout)


def backup_new(host, instance: str) -> str:
    before = set(archives(host, instance))
    backup_ok(host, instance)
    new = [name for name in archives(host, instance) if name not in before]
    assert len(new) == 1, new
    return new[0]


def restore(host, instance: str, which: str):
    return host.run(f"borg-restore-{instance} restore {which}")


def borg_version(host) -> tuple[int, ...]:
    return tuple(int(part) for part in re.search(r"(\d+)\.(\d+)\.(\d+)", host.check_output("borg --version")).groups())


def test_status_right_after_the_converge_is_pending(host):
    """Before the first backup, which creates the repositories, status used to say UNREADABLE."""
    assert_pending_after_converge(host, "borg", INSTANCES)


def test_units_and_timers_are_installed(host):
    listed = host.check_output("systemctl list-timers --all --no-legend --plain")
    for instance in INSTANCES:
        assert f"borg-backup-{instance}.timer" in listed
        assert host.service(f"borg-backup-{instance}.timer").is_enabled
        assert host.file(f"/usr/local/bin/borg-restore-{instance}").mode == 0o755
    assert "borg-backup-local-check.timer" in listed and "borg-backup-remote-check.timer" in listed
    assert not host.file(f"{UNIT_DIR}/borg-backup-retired.service").exists
    timer = host.file(f"{UNIT_DIR}/borg-backup-local.timer").content_string
    assert "OnCalendar=*-*-* 03:00:00" in timer and "RandomizedDelaySec=60" in timer
    service = host.file(f"{UNIT_DIR}/borg-backup-local.service").content_string
    assert "User=dbuser" in service and "StartLimitIntervalSec=0" in service
    assert "Nice=10" in service and "IOSchedulingClass=idle" in service
    assert "LoadCredential=passphrase:/etc/selfhost-backup/borg/local/passphrase" in service
    assert "ReadWritePaths=/srv/borg/local" in service
    remote = host.file(f"{UNIT_DIR}/borg-backup-remote.service").content_string
    assert "LoadCredential=ssh_key:/etc/selfhost-backup/borg/remote/ssh_key" in remote
    assert "LoadCredential=known_hosts:/etc/selfhost-backup/borg/remote/known_hosts" in remote
    assert host.run(f"systemd-analyze verify {UNIT_DIR}/borg-backup-local.service "
                    f"{UNIT_DIR}/borg-backup-local-check.service").rc == 0


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
        assert restore(host, instance, "latest").rc != 0
    backup_ok(host, "local")
    backup_ok(host, "remote")
    journal = host.check_output("journalctl --no-pager -o cat -u borg-backup-local.service -u borg-backup-remote.service")
    assert journal.count("initialised the repository (encryption repokey-blake2)") == 2
    assert host.file("/srv/borg/local/config").user == "dbuser"
    # A second backup finds it ("already exists") and initialises nothing.
    backup_ok(host, "local")
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
        result = backup(host, "local")
        assert result.rc != 0
        assert host.run("systemctl is-failed borg-backup-local.service").stdout.strip() == "failed"
        assert host.check_output("ls -A /srv/borg/local") == ""
        assert _journal_count(host, "local", "initialised the repository") == 1
        assert _journal_count(host, "local", "not a valid repository") >= 1
    finally:
        host.check_output("rm -rf /srv/borg/local && mv /srv/borg/local.away /srv/borg/local")
    backup_ok(host, "local")


def test_a_vanished_remote_repository_fails_and_is_not_created_again(host):
    # As after a server that lost its data: the repository's path is gone on the server.
    server = _server()
    path = f"/srv/borg/{host.backend.get_hostname()}"
    server.check_output(f"mv {path} {path}.away")
    try:
        result = backup(host, "remote")
        assert result.rc != 0
        assert not server.file(path).exists
        assert _journal_count(host, "remote", "initialised the repository") == 1
    finally:
        server.check_output(f"rm -rf {path} && mv {path}.away {path}")
    backup_ok(host, "remote")


def test_round_trip_by_name_and_latest(host):
    write(host, "app.txt", "app one\nline 2\n")
    first = backup_new(host, "local")
    write(host, "app.txt", "app two\n\ttabs and 100% $HOME\n")
    backup_new(host, "local")
    host.check_output(f"rm -f {DATA}/app.txt")
    started = host.check_output("systemctl show -P ActiveEnterTimestampMonotonic borg-test-app.service")

    result = restore(host, "local", first)
    assert result.rc == 0, result.stderr
    assert read(host, "app.txt") == "app one\nline 2\n"
    result = restore(host, "local", "latest")
    assert result.rc == 0, result.stderr
    assert read(host, "app.txt") == "app two\n\ttabs and 100% $HOME\n"
    # stop_units: the application was stopped and started again.
    assert "stopping borg-test-app.service" in result.stderr
    assert host.service("borg-test-app.service").is_running
    assert host.check_output("systemctl show -P ActiveEnterTimestampMonotonic borg-test-app.service") != started


def test_everything_belongs_to_the_request_user(host):
    # Also after restores run by root: no root-owned lock, cache or security files.
    assert host.check_output("find /srv/borg/local ! -user dbuser | wc -l") == "0"
    assert host.check_output("find /var/cache/borg-backup-local ! -user dbuser | wc -l") == "0"
    assert host.file("/srv/borg/local/config").user == "dbuser"
    assert host.file(f"{DATA}/app.txt").user == "dbuser"
    # No temporary copy of the secrets is left behind by the interactive restores.
    assert host.run("ls -d /run/borg-restore.* 2>/dev/null").stdout == ""


NOTIFIED = notified_path("borg", "local")


def test_failed_dump_keeps_no_archive(host, scenario):
    server = server_host(scenario["borg_test_server"])
    write(host, "app.txt", "good content\n")
    backup_ok(host, "local")
    assert_healthy(host, "borg", "local")
    before = archives(host, "local")
    good = assert_good_run_monitored(host, server, scenario, "borg", "local", len(before))
    pings_before = len(pings_seen(server, ping_check(host, scenario)))
    write(host, "app.txt", "broken content\n")
    host.check_output(f"rm -f {NOTIFIED} && touch {DATA}/fail-backup")
    try:
        result = backup(host, "local")
    finally:
        host.check_output(f"rm -f {DATA}/fail-backup")
    assert result.rc != 0
    assert host.run("systemctl is-failed borg-backup-local.service").stdout.strip() == "failed"
    assert_failure_reported(host, "borg", "local")
    assert_failed_run_monitored(host, server, scenario, "borg", "local", good, pings_before)
    assert archives(host, "local") == before
    # Not even a checkpoint archive.
    listed = host.check_output("BORG_PASSCOMMAND='cat /etc/selfhost-backup/borg/local/passphrase' "
                               "BORG_BASE_DIR=/tmp/borg-root borg list --consider-checkpoints --short /srv/borg/local")
    assert "checkpoint" not in listed
    assert restore(host, "local", "latest").rc == 0
    assert read(host, "app.txt") == "good content\n"


def test_a_monitor_that_is_down_never_fails_the_backup(host, scenario):
    assert_monitor_down_fails_nothing(host, server_host(scenario["borg_test_server"]), scenario, "borg", "local")


def test_failed_restore_fails_and_restarts_units(host):
    write(host, "app.txt", "untouched\n")
    result = restore(host, "local", f"local@{host.backend.get_hostname()}-2000-01-01T00:00:00.000000")
    assert result.rc != 0 and "no archive" in result.stderr
    assert read(host, "app.txt") == "untouched\n"  # checked before the restore command ran
    assert host.service("borg-test-app.service").is_running
    assert restore(host, "local", "../etc").rc != 0
    assert restore(host, "local", "shared_a-2000-01-01T00:00:00.000000").rc != 0


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
        write(host, "app.txt", f"retention {number}\n")
        newest.append(backup_new(host, "local"))
    assert archives(host, "local") == newest[-3:]
    # The other host's archive of the same instance is not this host's to prune.
    assert older in _all_archive_names(host)
    assert restore(host, "local", "latest").rc == 0
    assert read(host, "app.txt") == "retention 3\n"


def test_other_hosts_archives_are_never_listed_or_restored(host):
    newer = _other_host_archive(host, "other host, newest in the repository\n")
    assert newer in _all_archive_names(host)
    assert newer not in archives(host, "local")
    # latest is this host's newest archive, although the other host's is newer.
    assert restore(host, "local", "latest").rc == 0
    assert read(host, "app.txt") == "retention 3\n"
    refused = restore(host, "local", newer)
    assert refused.rc != 0 and "not a valid archive" in refused.stderr
    assert read(host, "app.txt") == "retention 3\n"
    # Everything in the repository still belongs to the request's user.
    assert host.check_output("find /srv/borg/local ! -user dbuser | wc -l") == "0"


def test_check_job_runs(host):
    result = host.run("systemctl start --wait borg-backup-local-check.service")
    assert result.rc == 0, host.run("journalctl --no-pager -n 30 -u borg-backup-local-check.service").stdout


def test_shared_repository_latest_per_instance(host):
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
    assert len(archives(host, "shared_a")) == 2
    assert len(archives(host, "shared_b")) == 1


def test_remote_ssh_repository_round_trip(host):
    write(host, "app.txt", "remote one\n")
    first = backup_new(host, "remote")
    write(host, "app.txt", "remote two\n")
    backup_new(host, "remote")
    host.check_output(f"rm -f {DATA}/app.txt")
    assert restore(host, "remote", first).rc == 0
    assert read(host, "app.txt") == "remote one\n"
    assert restore(host, "remote", "latest").rc == 0
    assert read(host, "app.txt") == "remote two\n"
    result = host.run("systemctl start --wait borg-backup-remote-check.service")
    assert result.rc == 0, host.run("journalctl --no-pager -n 30 -u borg-backup-remote-check.service").stdout


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
    secret = scenario["borg_test_passphrase"]
    host.check_output(f"touch {DATA}/slow")
    try:
        host.check_output("systemctl start --no-block borg-backup-remote.service")
        # The backup_cmd sleeps 4 s first: sample every process's command line meanwhile.
        seen = host.check_output("for i in $(seq 1 12); do ps -eo user,args; sleep 0.25; done")
        host.run("timeout 60 sh -c 'while [ \"$(systemctl is-active borg-backup-remote.service)\" = activating ]; "
                 "do sleep 0.5; done'")
    finally:
        host.check_output(f"rm -f {DATA}/slow")
    assert "borg" in seen and "create" in seen, seen
    # The backup runs as the request's user, borg and ssh included.
    assert all(line.startswith("dbuser") for line in seen.splitlines() if "borg" in line and "create" in line), seen
    restore_seen = host.check_output(
        "(borg-restore-remote restore latest >/dev/null 2>&1 &) ; for i in $(seq 1 8); do ps -eo user,args; sleep 0.25; done; sleep 2")
    assert all(line.startswith("dbuser") for line in restore_seen.splitlines()
               if "/usr/bin/borg" in line and "extract" in line), restore_seen
    files = host.check_output(f"cat {UNIT_DIR}/borg-backup-* /usr/local/bin/borg-restore-*")
    journal = host.check_output("journalctl --no-pager -o cat")
    for text in (seen, restore_seen, files, journal):
        assert secret not in text
        assert scenario["ping_monitor_secret"] not in text
    for path in ("passphrase", "ssh_key", "known_hosts"):
        secret_file = host.file(f"/etc/selfhost-backup/borg/remote/{path}")
        assert secret_file.user == "root" and secret_file.mode == 0o600
    assert host.file("/etc/selfhost-backup/borg/remote").mode == 0o700
    ping_url = host.file("/etc/selfhost-backup/borg/local/ping_url")
    assert ping_url.user == "root" and ping_url.mode == 0o600 and scenario["ping_monitor_secret"] in ping_url.content_string


def test_restore_script_help_and_misuse(host):
    helped = host.run("borg-restore-local --help")
    assert helped.rc == 0 and "restore latest" in helped.stdout
    assert host.run("borg-restore-local").rc == 2
    assert host.run("borg-restore-local backup").rc != 0
    assert host.run("setpriv --reuid=dbuser --regid=dbuser --init-groups borg-restore-local snapshots").rc != 0


def _host_state(host) -> str:
    return host.check_output(
        f"ls -la --time-style=full-iso {UNIT_DIR} /usr/local/bin /var/lib/selfhost-backup /etc/selfhost-backup/borg; "
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
    for field in ("passphrase_file", "retention.keep_daily", "colour", "encryption", "ssh", "host"):
        assert f"borg_instances.bad.settings.{field}" in output, output
    assert scenario["borg_test_passphrase"] not in output
    assert "changed=0" in output, output
    assert _host_state(host) == before
    assert "no-marker" in before


def test_disabled_and_vanished_instances_are_removed(host):
    run = _playbook(host, "remove.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    for instance in ("shared_b", "shared_a", "remote"):
        assert not host.file(f"{UNIT_DIR}/borg-backup-{instance}.service").exists, instance
        assert not host.file(f"/usr/local/bin/borg-restore-{instance}").exists, instance
        assert not host.file(f"/etc/selfhost-backup/borg/{instance}").exists, instance
        assert not host.file(f"/var/lib/selfhost-backup/borg-backup-{instance}.json").exists, instance
    service = host.file(f"{UNIT_DIR}/borg-backup-local.service").content_string
    assert "LoadCredential=passphrase:/etc/borg-test-passphrase-local" in service
    # The stored copy of the passphrase is gone now that it comes from a file.
    assert not host.file("/etc/selfhost-backup/borg/local/passphrase").exists
    # Repositories are never deleted.
    assert host.file("/srv/borg/shared/config").exists
