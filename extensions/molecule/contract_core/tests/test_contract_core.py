"""The job installed by selfhost.backup.backup_jobs on a real systemd host.

The tests run in file order: the last one removes the job.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

from conftest import SCENARIO_DIR

UNIT_DIR = "/etc/systemd/system"


def _unit_paths(probe: dict) -> list[str]:
    job = probe["probe_job"]
    return [f"{UNIT_DIR}/{job}{suffix}" for suffix in (".service", ".timer", "-check.service", "-check.timer")]


def test_timers_are_enabled_and_listed(host, probe):
    listed = host.check_output("systemctl list-timers --all --no-legend --plain")
    for timer in (f"{probe['probe_job']}.timer", f"{probe['probe_job']}-check.timer"):
        assert timer in listed
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running


def test_timer_uses_the_schedule(host, probe):
    timer = host.file(f"{UNIT_DIR}/{probe['probe_job']}.timer").content_string
    assert f"OnCalendar={probe['probe_calendar']}" in timer
    assert "Persistent=true" in timer
    assert "RandomizedDelaySec=60" in timer


def test_units_hold_no_secret_and_load_it_as_credential(host, probe):
    for path in _unit_paths(probe):
        unit = host.file(path)
        assert unit.exists, path
        assert probe["probe_secret"] not in unit.content_string, path
    service = host.file(f"{UNIT_DIR}/{probe['probe_job']}.service").content_string
    assert f"LoadCredential=token:{probe['probe_secret_file']}" in service
    assert f"User={probe['probe_user']}" in service


def test_units_pass_systemd_analyze_verify(host, probe):
    result = host.run("systemd-analyze verify " + " ".join(_unit_paths(probe)))
    assert result.rc == 0, result.stderr


def test_service_runs_as_the_request_user_with_its_credential(host, probe):
    out = probe["probe_dir"]
    host.run(f"rm -f {out}/whoami {out}/token.sha256 {out}/mode")
    started = host.run(f"systemctl start --wait {probe['probe_job']}.service")
    assert started.rc == 0, started.stderr
    assert host.file(f"{out}/whoami").content_string.strip() == probe["probe_user"]
    expected_hash = hashlib.sha256(probe["probe_secret"].encode()).hexdigest()
    assert host.file(f"{out}/token.sha256").content_string.strip() == expected_hash
    # `%` and spaces in an environment value reach the job verbatim.
    assert host.file(f"{out}/mode").content_string == "scheduled 100%"
    assert host.file(f"{out}/whoami").user == probe["probe_user"]


def test_secret_not_in_the_journal(host, probe):
    journal = host.run(f"journalctl --no-pager -u {probe['probe_job']}.service")
    assert journal.rc == 0
    assert probe["probe_job"] in journal.stdout or "probe job" in journal.stdout
    assert probe["probe_secret"] not in journal.stdout


def test_restore_script_is_on_path(host):
    result = host.run("selfhost-probe-restore latest")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "restore latest"
    assert host.file("/usr/local/bin/selfhost-probe-restore").mode == 0o755


def _host_state(host) -> str:
    """What a bad run could have touched: units, scripts, the module's state and the marker."""
    return host.check_output(
        f"ls -la --time-style=full-iso {UNIT_DIR} /usr/local/bin /var/lib/selfhost-backup; "
        # Timer names and states only: list-timers' "time left" column changes by itself.
        "systemctl list-units --type=timer --all --no-legend --plain | awk '{print $1, $3, $4}'; "
        "test ! -e /root/bad-request-marker && echo no-marker"
    )


def test_bad_request_fails_on_the_controller_and_changes_nothing(host):
    before = _host_state(host)
    run = subprocess.run(
        [
            "ansible-playbook",
            "--inventory", os.environ["MOLECULE_INVENTORY_FILE"],
            "--limit", host.backend.get_hostname(),
            str(SCENARIO_DIR / "bad_request.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    # Every violation at once, each naming its field and the rule.
    assert "probe_instances.bad.request.backup_name" in output, output
    assert "probe_instances.bad.request.backup_cmd" in output, output
    assert "probe_instances.bad.request.restore_cmd" in output, output
    assert "probe_instances.bad.request.colour" in output, output
    assert "ok=0" in output and "changed=0" in output, output
    assert _host_state(host) == before
    assert "no-marker" in before


def test_prune_removes_everything_then_reports_no_change(host, probe):
    """An empty job list with the probe's name as the prune prefix uninstalls the job (the roles' way)."""
    prune = json.dumps({"jobs": [], "prune": [probe["probe_job"]]})
    removed = host.ansible("selfhost.backup.backup_jobs", prune, check=False)
    assert removed["changed"] is True, removed
    assert removed["pruned"] == [probe["probe_job"]], removed
    for path in [*_unit_paths(probe), "/usr/local/bin/selfhost-probe-restore"]:
        assert not host.file(path).exists, path
    listed = host.check_output("systemctl list-timers --all --no-legend --plain")
    assert probe["probe_job"] not in listed
    assert not host.file(f"/var/lib/selfhost-backup/{probe['probe_job']}.json").exists
    # The module's name before 0.1.0 still reaches it (meta/runtime.yml).
    again = host.ansible("selfhost.backup.backup_jobs", prune, check=False)
    assert again["changed"] is False and again["pruned"] == [], again
