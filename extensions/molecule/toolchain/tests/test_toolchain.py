"""The test hosts boot a real systemd and run the distribution's backup tools."""

from __future__ import annotations

import re

# What each Debian release ships; the providers' behaviour depends on these.
EXPECTED = {
    "12": {"restic": (0, 14), "borg": (1, 2)},
    "13": {"restic": (0, 18), "borg": (1, 4)},
}


def _version(text: str) -> tuple[int, int]:
    match = re.search(r"(\d+)\.(\d+)\.\d+", text)
    assert match, f"no version in {text!r}"
    return int(match.group(1)), int(match.group(2))


def _debian_major(host) -> str:
    return host.file("/etc/debian_version").content_string.strip().split(".")[0]


def test_systemd_is_pid_1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running")
    assert state.stdout.strip() == "running", state.stdout + state.stderr


def test_credentials_reach_services(host):
    """LoadCredential= works in the container (needs the make-rshared unit)."""
    host.run_expect([0], "install -m 0600 /dev/null /root/selfhost-cred && echo s3cret > /root/selfhost-cred")
    cmd = host.run(
        "systemd-run --wait --pipe --quiet -p LoadCredential=probe:/root/selfhost-cred "
        "-p User=nobody sh -c 'cat \"$CREDENTIALS_DIRECTORY/probe\"'"
    )
    host.run("rm -f /root/selfhost-cred")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "s3cret"


def test_restic_runs(host):
    out = host.check_output("restic version")
    assert _version(out) == EXPECTED[_debian_major(host)]["restic"]


def test_borg_runs(host):
    out = host.check_output("borg --version")
    assert _version(out) == EXPECTED[_debian_major(host)]["borg"]
