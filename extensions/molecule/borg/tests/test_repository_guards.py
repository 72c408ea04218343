"""Converges that must stop before they change anything (issue 15, items 2 and 3), on real hosts:

- a wrong passphrase never replaces the working one: the converge fails naming the instances, and the secrets,
  units and restore scripts stay byte-identical, so the next backups still work;
- a repository the job initialised before that is missing now (its contents wiped, a server that lost it) fails
  the converge (the backups refuse it already), until borg_reinitialise_repositories names it: then the next
  backup initialises a new one.

They run after the drills and before the removal test (conftest.py): they converge variant.yml, the instances
of converge.yml with changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from conftest import SCENARIO_DIR
from provider_checks import server_host

testinfra_hosts = ["ansible://clients"]

WRONG = "wrong-9e2b61-never-shown"
MARKER = "/var/cache/borg-backup-{}/selfhost-backup-initialised"


def _variant(host, **extra_vars) -> tuple[int, str]:
    run = subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "--extra-vars", json.dumps(extra_vars), str(SCENARIO_DIR / "variant.yml")],
        capture_output=True, text=True, check=False)
    return run.returncode, run.stdout + run.stderr


def _installed(host) -> str:
    """Every secret, unit, restore script and manifest of the borg jobs: content hash, then size, mode, mtime."""
    files = (r"find /etc/selfhost-backup/borg /etc/systemd/system /usr/local/bin /var/lib/selfhost-backup -type f "
             # The module's own cache of verified fingerprints is no installed state.
             r"\( -path '/etc/selfhost-backup/borg/*' -o -name 'borg-*' \) ! -name 'borg-repositories.json'")
    return host.check_output(f"{files} -exec sha256sum {{}} + | sort; {files} -printf '%p %s %m %T@\\n' | sort")


def _backup_ok(host, instance: str) -> None:
    result = host.run(f"systemctl start --wait borg-backup-{instance}.service")
    assert result.rc == 0, host.run(f"journalctl --no-pager -n 40 -u borg-backup-{instance}.service").stdout


def _archives(host, instance: str) -> list[str]:
    result = host.run(f"borg-restore-{instance} snapshots")
    assert result.rc == 0, result.stderr
    return re.findall(r"^(\S+-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})\s", result.stdout, re.M)


def _no_secret(output: str, scenario: dict) -> None:
    for secret in (WRONG, scenario["borg_test_passphrase"]):
        assert secret not in output


def test_a_wrong_passphrase_changes_nothing_and_the_backups_go_on(host, scenario):
    _backup_ok(host, "local")
    _backup_ok(host, "remote")
    before = _installed(host)
    assert "/etc/selfhost-backup/borg/local/passphrase" in before and "borg-restore-remote" in before
    changes = {name: {"settings": {"passphrase": WRONG}} for name in ("local", "remote")}
    rc, output = _variant(host, borg_test_changes=changes)
    assert rc != 0, output
    for name in ("local", "remote"):
        assert f"borg_instances.{name}: the passphrase does not open the existing repository" in output, output
    assert "borg_instances.shared_a:" not in output and "borg_instances.shared_b:" not in output
    assert "Nothing on this host was changed" in output
    _no_secret(output, scenario)
    assert re.search(r"changed=0 .*failed=1", output), output
    assert _installed(host) == before
    _backup_ok(host, "local")
    _backup_ok(host, "remote")


def test_a_vanished_repository_fails_the_converge_until_reinitialised_on_purpose(host, scenario):
    server = server_host(scenario["borg_test_server"])
    remote = f"/srv/borg/{host.backend.get_hostname()}"
    _backup_ok(host, "local")
    _backup_ok(host, "remote")
    # A wiped volume (the directory stays, its contents are gone) and a server that lost the repository.
    host.check_output("find /srv/borg/local -mindepth 1 -delete")
    server.check_output(f"rm -rf {remote}.away && mv {remote} {remote}.away")
    before = _installed(host)
    rc, output = _variant(host)
    assert rc != 0, output
    assert ("borg_instances.local: the repository /srv/borg/local was initialised by this instance's job before "
            f"({MARKER.format('local')}) and is missing now") in output, output
    assert "borg_instances.remote: the repository on its server was initialised by this instance's job before" in output
    assert "borg_reinitialise_repositories: [local]" in output
    _no_secret(output, scenario)
    assert host.check_output("ls -A /srv/borg/local") == ""
    assert not server.file(remote).exists
    assert _installed(host) == before
    assert host.file(MARKER.format("local")).exists and host.file(MARKER.format("remote")).exists
    # On purpose: the markers go, and the next backups initialise new, empty repositories.
    rc, output = _variant(host, borg_reinitialise_repositories=["local", "remote"])
    assert rc == 0, output
    _no_secret(output, scenario)
    assert not host.file(MARKER.format("local")).exists and not host.file(MARKER.format("remote")).exists
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    _backup_ok(host, "local")
    _backup_ok(host, "remote")
    journal = host.check_output(f"journalctl --no-pager -o cat --since '{since}' "
                                "-u borg-backup-local.service -u borg-backup-remote.service")
    assert journal.count("initialised the repository") == 2, journal
    assert len(_archives(host, "local")) == 1 and len(_archives(host, "remote")) == 1
    assert host.file("/srv/borg/local/config").exists and server.file(f"{remote}/config").exists
    server.check_output(f"rm -rf {remote}.away")


def test_a_name_to_reinitialise_must_be_an_enabled_instance(host):
    before = _installed(host)
    rc, output = _variant(host, borg_reinitialise_repositories=["retired"])
    assert rc != 0
    assert "borg_reinitialise_repositories: retired is not an enabled instance of borg_instances" in output, output
    assert _installed(host) == before
