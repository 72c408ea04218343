"""Converges that must stop before they change anything (issue 15, items 2 and 3), on real hosts:

- a wrong passphrase never replaces the working one: the converge fails naming the instances, and the secrets,
  units and restore scripts stay byte-identical, so the next backups still work;
- a repository this host used before that is missing now (its contents wiped, a server that lost it) fails the
  converge, and nothing is initialised in its place, until restic_reinitialise_repositories names it.

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

WRONG = "wrong-4c1d9e-never-shown"


def _variant(host, **extra_vars) -> tuple[int, str]:
    run = subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "--extra-vars", json.dumps(extra_vars), str(SCENARIO_DIR / "variant.yml")],
        capture_output=True, text=True, check=False)
    return run.returncode, run.stdout + run.stderr


def _installed(host) -> str:
    """Every secret, unit, restore script and manifest of the restic jobs: content hash, then size, mode, mtime."""
    files = (r"find /etc/selfhost-backup/restic /etc/systemd/system /usr/local/bin /var/lib/selfhost-backup -type f "
             # The module's own cache of verified fingerprints is no installed state.
             r"\( -path '/etc/selfhost-backup/restic/*' -o -name 'restic-*' \) ! -name 'restic-repositories.json'")
    return host.check_output(f"{files} -exec sha256sum {{}} + | sort; {files} -printf '%p %s %m %T@\\n' | sort")


def _backup_ok(host, instance: str) -> None:
    result = host.run(f"systemctl start --wait restic-backup-{instance}.service")
    assert result.rc == 0, host.run(f"journalctl --no-pager -n 40 -u restic-backup-{instance}.service").stdout


def _snapshots(host, instance: str) -> list[str]:
    return re.findall(r"^([0-9a-f]{8})\s", host.check_output(f"restic-restore-{instance} snapshots"), re.M)


def _no_secret(output: str, scenario: dict) -> None:
    for secret in (WRONG, scenario["restic_test_passphrase"], scenario["restic_test_rest_password"]):
        assert secret not in output


def test_a_wrong_passphrase_changes_nothing_and_the_backups_go_on(host, scenario):
    _backup_ok(host, "local")
    before = _installed(host)
    assert "/etc/selfhost-backup/restic/local/passphrase" in before and "restic-restore-remote" in before
    changes = {name: {"settings": {"passphrase": WRONG}} for name in ("local", "remote")}
    rc, output = _variant(host, restic_test_changes=changes)
    assert rc != 0, output
    for name in ("local", "remote"):
        assert f"restic_instances.{name}: the passphrase does not open the existing repository" in output, output
    assert "restic_instances.second:" not in output and "restic_instances.shared_a:" not in output
    assert "Nothing on this host was changed" in output
    _no_secret(output, scenario)
    assert re.search(r"changed=0 .*failed=1", output), output
    assert _installed(host) == before
    _backup_ok(host, "local")
    _backup_ok(host, "remote")


def test_a_vanished_repository_fails_the_converge_until_reinitialised_on_purpose(host, scenario):
    server = server_host(scenario["restic_test_server"])
    remote = f"/srv/restic/{host.backend.get_hostname()}"
    _backup_ok(host, "second")
    _backup_ok(host, "remote")
    # A wiped volume (the directory stays, its contents are gone) and a server that lost the repository.
    host.check_output("find /srv/restic/second -mindepth 1 -delete")
    server.check_output(f"rm -rf {remote}.away && mv {remote} {remote}.away")
    before = _installed(host)
    rc, output = _variant(host)
    assert rc != 0, output
    assert ("restic_instances.second: the repository /srv/restic/second was opened on this host before and is "
            "missing now") in output, output
    assert "restic_instances.remote: the remote repository was opened on this host before" in output, output
    assert "restic_reinitialise_repositories: [second]" in output
    assert "restic_instances.local:" not in output
    _no_secret(output, scenario)
    # Nothing initialised in their place, nothing on the host changed.
    assert host.check_output("ls -A /srv/restic/second") == ""
    assert not server.file(remote).exists
    assert _installed(host) == before
    # On purpose: new, empty repositories.
    rc, output = _variant(host, restic_reinitialise_repositories=["second", "remote"])
    assert rc == 0, output
    _no_secret(output, scenario)
    assert host.file("/srv/restic/second/config").exists and server.file(f"{remote}/config").exists
    assert _snapshots(host, "second") == [] and _snapshots(host, "remote") == []
    _backup_ok(host, "second")
    _backup_ok(host, "remote")
    assert len(_snapshots(host, "second")) == 1 and len(_snapshots(host, "remote")) == 1
    server.check_output(f"rm -rf {remote}.away")


def test_a_name_to_reinitialise_must_be_an_enabled_instance(host):
    before = _installed(host)
    rc, output = _variant(host, restic_reinitialise_repositories=["retired"])
    assert rc != 0
    assert "restic_reinitialise_repositories: retired is not an enabled instance of restic_instances" in output, output
    assert _installed(host) == before
