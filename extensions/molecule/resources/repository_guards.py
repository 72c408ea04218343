"""Converges that must stop before they change anything (issue 15, items 2 and 3), on real hosts, for the restic and
borg scenarios alike:

- a wrong passphrase never replaces the working one: the converge fails naming the instances, and the secrets,
  units and restore scripts stay byte-identical, so the next backups still work;
- a repository this host used before that is missing now (its contents wiped, a server that lost it) fails the
  converge, and nothing is initialised in its place, until <provider>_reinitialise_repositories names it: then
  restic's converge initialises a new one, borg's next backup does (borg's job remembers the repositories it
  initialised by a marker file, which that converge removes).

Each scenario's tests/test_repository_guards.py imports these tests; its conftest defines the fixture ``tool`` and
runs them after the drills and before the removal test. They converge variant.yml, the instances of converge.yml
with changes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess

from drills import SCENARIOS, Tool, backup_ok, now, snapshots
from provider_checks import server_host

__all__ = [
    "test_a_wrong_passphrase_changes_nothing_and_the_backups_go_on",
    "test_a_vanished_repository_fails_the_converge_until_reinitialised_on_purpose",
    "test_a_name_to_reinitialise_must_be_an_enabled_instance",
]


@dataclasses.dataclass(frozen=True)
class Guarded:
    """What the guards' tests need to know of one provider scenario beyond its Tool."""

    wrong: str  # the wrong passphrase, which no output may show
    secrets: tuple  # the scenario variables no output may show either
    backed_up_first: tuple  # the instances backed up before the wrong passphrase is tried
    untouched: tuple  # instances the wrong passphrase's refusal must not name (their passphrase did not change)
    wiped: str  # the local instance whose repository is wiped
    vanished: tuple  # what the refusal of the wiped and the lost repository says
    not_vanished: tuple  # instances that refusal must not name
    marker: str  # the file (by instance) by which the job remembers it initialised the repository; "" for none


BORG_MARKER = "/var/cache/borg-backup-{}/selfhost-backup-initialised"

GUARDED = {
    "restic": Guarded(
        wrong="wrong-4c1d9e-never-shown",
        secrets=("restic_test_passphrase", "restic_test_rest_password"),
        backed_up_first=("local",),
        untouched=("second", "shared_a"),
        wiped="second",
        vanished=("restic_instances.second: the repository /srv/restic/second was opened on this host before and is "
                  "missing now",
                  "restic_instances.remote: the remote repository was opened on this host before",
                  "restic_reinitialise_repositories: [second]"),
        not_vanished=("local",),
        # The converge initialises restic's repositories.
        marker="",
    ),
    "borg": Guarded(
        wrong="wrong-9e2b61-never-shown",
        secrets=("borg_test_passphrase",),
        backed_up_first=("local", "remote"),
        untouched=("shared_a", "shared_b"),
        wiped="local",
        vanished=("borg_instances.local: the repository /srv/borg/local was initialised by this instance's job "
                  f"before ({BORG_MARKER.format('local')}) and is missing now",
                  "borg_instances.remote: the repository on its server was initialised by this instance's job before",
                  "borg_reinitialise_repositories: [local]"),
        not_vanished=(),
        marker=BORG_MARKER,
    ),
}


def variant(host, tool: Tool, **extra_vars) -> tuple[int, str]:
    """Converge the scenario's variant.yml on this host: its exit status and its output."""
    run = subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "--extra-vars", json.dumps(extra_vars), str(SCENARIOS / tool.provider / "variant.yml")],
        capture_output=True, text=True, check=False)
    return run.returncode, run.stdout + run.stderr


def installed(host, tool: Tool) -> str:
    """Every secret, unit, restore script and manifest of the provider's jobs: content hash, then size, mode, mtime."""
    provider = tool.provider
    files = (rf"find /etc/selfhost-backup/{provider} /etc/systemd/system /usr/local/bin /var/lib/selfhost-backup -type f "
             # The module's own cache of verified fingerprints is no installed state.
             rf"\( -path '/etc/selfhost-backup/{provider}/*' -o -name '{provider}-*' \) ! -name '{provider}-repositories.json'")
    return host.check_output(f"{files} -exec sha256sum {{}} + | sort; {files} -printf '%p %s %m %T@\\n' | sort")


def no_secret(output: str, tool: Tool, scenario: dict) -> None:
    guarded = GUARDED[tool.provider]
    for secret in (guarded.wrong, *(scenario[name] for name in guarded.secrets)):
        assert secret not in output


def test_a_wrong_passphrase_changes_nothing_and_the_backups_go_on(host, tool, scenario):
    guarded = GUARDED[tool.provider]
    for instance in guarded.backed_up_first:
        backup_ok(host, tool, instance)
    before = installed(host, tool)
    assert f"/etc/selfhost-backup/{tool.provider}/local/passphrase" in before and f"{tool.provider}-restore-remote" in before
    changes = {name: {"settings": {"passphrase": guarded.wrong}} for name in ("local", "remote")}
    rc, output = variant(host, tool, **{f"{tool.provider}_test_changes": changes})
    assert rc != 0, output
    for name in ("local", "remote"):
        assert f"{tool.provider}_instances.{name}: the passphrase does not open the existing repository" in output, output
    for name in guarded.untouched:
        assert f"{tool.provider}_instances.{name}:" not in output
    assert "Nothing on this host was changed" in output
    no_secret(output, tool, scenario)
    assert re.search(r"changed=0 .*failed=1", output), output
    assert installed(host, tool) == before
    backup_ok(host, tool, "local")
    backup_ok(host, tool, "remote")


def test_a_vanished_repository_fails_the_converge_until_reinitialised_on_purpose(host, tool, scenario):
    guarded = GUARDED[tool.provider]
    server = server_host(scenario[tool.server_var])
    wiped = f"/srv/{tool.provider}/{guarded.wiped}"
    remote = f"/srv/{tool.provider}/{host.backend.get_hostname()}"
    backup_ok(host, tool, guarded.wiped)
    backup_ok(host, tool, "remote")
    # A wiped volume (the directory stays, its contents are gone) and a server that lost the repository.
    host.check_output(f"find {wiped} -mindepth 1 -delete")
    server.check_output(f"rm -rf {remote}.away && mv {remote} {remote}.away")
    before = installed(host, tool)
    rc, output = variant(host, tool)
    assert rc != 0, output
    for text in guarded.vanished:
        assert text in output, output
    for name in guarded.not_vanished:
        assert f"{tool.provider}_instances.{name}:" not in output
    no_secret(output, tool, scenario)
    # Nothing initialised in their place, nothing on the host changed.
    assert host.check_output(f"ls -A {wiped}") == ""
    assert not server.file(remote).exists
    assert installed(host, tool) == before
    markers = [guarded.marker.format(name) for name in (guarded.wiped, "remote")] if guarded.marker else []
    assert all(host.file(marker).exists for marker in markers)
    # On purpose: new, empty repositories (borg: the markers go, and the next backups initialise them).
    rc, output = variant(host, tool, **{f"{tool.provider}_reinitialise_repositories": [guarded.wiped, "remote"]})
    assert rc == 0, output
    no_secret(output, tool, scenario)
    assert not any(host.file(marker).exists for marker in markers)
    if not guarded.marker:
        # restic: the converge initialised them.
        assert host.file(f"{wiped}/config").exists and server.file(f"{remote}/config").exists
        assert snapshots(host, tool, guarded.wiped) == [] and snapshots(host, tool, "remote") == []
    since = now(host)
    backup_ok(host, tool, guarded.wiped)
    backup_ok(host, tool, "remote")
    if guarded.marker:
        journal = host.check_output(f"journalctl --no-pager -o cat --since '{since}' "
                                    f"-u {tool.unit(guarded.wiped)} -u {tool.unit('remote')}")
        assert journal.count("initialised the repository") == 2, journal
    assert len(snapshots(host, tool, guarded.wiped)) == 1 and len(snapshots(host, tool, "remote")) == 1
    assert host.file(f"{wiped}/config").exists and server.file(f"{remote}/config").exists
    server.check_output(f"rm -rf {remote}.away")


def test_a_name_to_reinitialise_must_be_an_enabled_instance(host, tool):
    before = installed(host, tool)
    rc, output = variant(host, tool, **{f"{tool.provider}_reinitialise_repositories": ["retired"]})
    assert rc != 0
    assert (f"{tool.provider}_reinitialise_repositories: retired is not an enabled instance of "
            f"{tool.provider}_instances") in output, output
    assert installed(host, tool) == before
