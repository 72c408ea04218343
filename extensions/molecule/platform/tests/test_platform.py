"""The platform check and the tags on a real host.

- A host whose facts say another OS (its /etc/os-release rewritten: Fedora, Ubuntu) is refused by every role of the
  collection before any change, the message naming the OS found and the supported ones; a system without apt stays
  refused with selfhost_backup_allow_untested_platform, an apt-based one passes the check with it.
- playbooks/site.yml, the example users copy, with --tags restic converges restic (with the PostgreSQL requester)
  and runs nothing of borg; --tags borg nothing of restic; --tags postgresql the requester alone.

The tests run in file order: the platform ones first, on a host no role of the collection has touched.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
COLLECTION = SCENARIO_DIR.parents[2]
VARS = yaml.safe_load((SCENARIO_DIR / "vars.yml").read_text())
HOST = "platform-debian13"
SUPPORTED = "selfhost.backup supports Debian 12 (bookworm) and Debian 13 (trixie); this host runs"

FEDORA = """NAME="Fedora Linux"
VERSION="41 (Server Edition)"
ID=fedora
VERSION_ID=41
PRETTY_NAME="Fedora Linux 41 (Server Edition)"
"""
UBUNTU = """PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
"""


def sh(command: str, check: bool = True, stdin: str = "") -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", "exec", "-i", HOST, "bash", "-o", "pipefail", "-c", command],
                            input=stdin, capture_output=True, text=True, timeout=900, check=False)
    if check:
        assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


def playbook(path: Path, *args: str) -> tuple[int, str]:
    run = subprocess.run(
        ["ansible-playbook", "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", HOST,
         "-e", f"@{SCENARIO_DIR / 'vars.yml'}", *args, str(path)],
        capture_output=True, text=True, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    output = run.stdout + run.stderr
    assert VARS["platform_test_passphrase"] not in output
    return run.returncode, output


def host_state() -> str:
    """What any role of the collection writes: packages, units, scripts, helpers, secrets, repositories."""
    return sh(
        "ls -la --time-style=full-iso /etc/systemd/system /usr/local/bin /usr/local/lib /usr/local/libexec "
        "/etc/selfhost-backup /var/lib/selfhost-backup /srv 2>&1; "
        "dpkg-query -W -f '${Package} ${Version} ${Status}\\n' | sort", check=False).stdout


@pytest.fixture(name="os_release")
def os_release_fixture():
    """Rewrite /etc/os-release (a link to /usr/lib/os-release on Debian) for one test; put the link back after."""

    def rewrite(content: str) -> None:
        sh("rm /etc/os-release && cat > /etc/os-release", stdin=content)

    try:
        yield rewrite
    finally:
        sh("rm -f /etc/os-release && ln -s ../usr/lib/os-release /etc/os-release")


def task_lines(output: str) -> list[str]:
    return re.findall(r"^TASK \[(.*?)\]", output, flags=re.MULTILINE)


ROLES = ["postgresql", "mariadb", "sqlite", "restic", "borg"]
DESCRIPTIONS = {role: yaml.safe_load((COLLECTION / "roles" / role / "meta" / "argument_specs.yml").read_text())[
    "argument_specs"]["main"]["short_description"] for role in ROLES}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("allow", [False, True])
def test_a_host_without_apt_is_refused_by_every_role_before_any_change(os_release, role: str, allow: bool):
    os_release(FEDORA)
    before = host_state()
    code, output = playbook(SCENARIO_DIR / "role.yml", "-e", f"platform_test_role={role}",
                            "-e", f"selfhost_backup_allow_untested_platform={str(allow).lower()}")
    assert code != 0, output
    assert f"{SUPPORTED} Fedora Linux 41 (os family" in output, output
    assert "Nothing was changed. The roles need an apt-based system" in output, output
    assert "changed=0" in output, output
    # The check is the role's first task: no other task of the role ran (after Ansible's own argument check).
    assert [name for name in task_lines(output) if name.startswith(f"selfhost.backup.{role} :")] == [
        f"selfhost.backup.{role} : Validating arguments against arg spec 'main' - {DESCRIPTIONS[role]}",
        f"selfhost.backup.{role} : Fail unless the host runs a supported platform (Debian 12 or 13), before anything "
        "else"], output
    assert host_state() == before


@pytest.mark.parametrize("role", ["sqlite", "restic"])
def test_an_untested_apt_based_host_is_refused_naming_the_variable_that_lets_it_through(os_release, role: str):
    os_release(UBUNTU)
    before = host_state()
    code, output = playbook(SCENARIO_DIR / "role.yml", "-e", f"platform_test_role={role}")
    assert code != 0, output
    assert (f"{SUPPORTED} Ubuntu 24.04 (os family Debian, package manager apt). Nothing was changed. It is apt-based "
            "but untested: set selfhost_backup_allow_untested_platform: true to try it at your own risk.") in output, \
        output
    assert "changed=0" in output, output
    assert host_state() == before


def test_an_untested_apt_based_host_passes_the_check_with_the_variable(os_release):
    os_release(UBUNTU)
    code, output = playbook(SCENARIO_DIR / "role.yml", "-e", "platform_test_role=sqlite",
                            "-e", "selfhost_backup_allow_untested_platform=true")
    # Only the check is asserted: the run may go on or fail later on an untested system.
    assert "Nothing was changed" not in output, output
    assert "It is untested; going on because selfhost_backup_allow_untested_platform is true, at your own risk." \
        in output, output
    assert "selfhost.backup.sqlite : Check the database paths" in task_lines(output), output


def test_the_facts_of_the_real_host_pass_the_check():
    code, output = playbook(SCENARIO_DIR / "role.yml", "-e", "platform_test_role=sqlite")
    assert code == 0, output
    assert "at your own risk" not in output, output
    sh("test -x /usr/local/libexec/selfhost-backup/sqlite-databasebackup")


SITE = COLLECTION / "playbooks" / "site.yml"


def unit_files(provider: str) -> str:
    return sh(f"ls /etc/systemd/system/ | grep '^{provider}-' || true; ls /usr/local/bin | grep '^{provider}-' || true"
              ).stdout


def test_site_with_tags_restic_converges_restic_and_runs_nothing_of_borg():
    code, output = playbook(SITE, "--tags", "restic")
    assert code == 0, output
    tasks = task_lines(output)
    assert "selfhost.backup.postgresql : Publish the whole-cluster request" in tasks, output
    assert "selfhost.backup.restic : Plan the restic jobs on the controller" in tasks, output
    assert [name for name in tasks if "borg" in name.lower()] == [], output
    installed = unit_files("restic").split()
    for name in ("restic-backup-postgres.service", "restic-backup-postgres.timer", "restic-restore-postgres"):
        assert name in installed, installed
    assert sh("systemctl is-enabled restic-backup-postgres.timer").stdout.strip() == "enabled"
    assert unit_files("borg") == ""
    assert sh("command -v borg", check=False).returncode != 0
    sh("systemctl start --wait restic-backup-postgres.service")
    assert "1 snapshots" in sh("restic-restore-postgres snapshots").stdout


def restic_state() -> str:
    """restic's units, restore script and secrets, with their contents and times."""
    return sh("find /etc/systemd/system /usr/local/bin /etc/selfhost-backup/restic -name 'restic*' "
              "-printf '%p %m %u %T@\\n' | sort; sha256sum /etc/systemd/system/restic-* "
              "/usr/local/bin/restic-restore-postgres /etc/selfhost-backup/restic/*/*").stdout


def test_site_with_tags_borg_converges_borg_and_runs_nothing_of_restic():
    restic_before = restic_state()
    code, output = playbook(SITE, "--tags", "borg")
    assert code == 0, output
    tasks = task_lines(output)
    assert "selfhost.backup.borg : Plan the borg jobs on the controller" in tasks, output
    assert [name for name in tasks if "restic" in name.lower()] == [], output
    installed = unit_files("borg").split()
    for name in ("borg-backup-postgres.service", "borg-backup-postgres.timer", "borg-restore-postgres"):
        assert name in installed, installed
    sh("systemctl start --wait borg-backup-postgres.service")
    assert len(sh("borg-restore-postgres snapshots").stdout.strip().splitlines()) == 1
    assert restic_state() == restic_before


def test_site_with_tags_postgresql_runs_the_requester_alone_and_the_whole_site_changes_nothing_more():
    code, output = playbook(SITE, "--tags", "postgresql")
    assert code == 0, output
    tasks = task_lines(output)
    assert "selfhost.backup.postgresql : Publish the whole-cluster request" in tasks, output
    assert [name for name in tasks if "restic" in name.lower() or "borg" in name.lower()] == [], output
    assert "changed=0" in output, output
    code, output = playbook(SITE)
    assert code == 0, output
    assert "changed=0" in output, output
