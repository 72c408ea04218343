# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""selfhost-backup status against a fake systemctl and fake restore scripts (the real ones run in molecule)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

STATUS = Path(__file__).resolve().parents[3] / 'roles' / 'provider_common' / 'files' / 'selfhost-backup'
NOW = int(time.time())

# systemctl show <unit> --timestamp=unix --property=...: answers from $FAKE_UNITS/<unit>.
FAKE_SYSTEMCTL = '#!/bin/sh\ncat "$FAKE_UNITS/$2" 2>/dev/null\n'


def restore_script(newest: str, late_after: int = 93600, rc: int = 0) -> str:
    return f'#!/bin/sh\n[ "$1" = newest ] || exit 2\necho "newest={newest} late_after={late_after}"\nexit {rc}\n'


@pytest.fixture
def host(tmp_path):
    for name in ('state', 'bin', 'units', 'tools'):
        (tmp_path / name).mkdir()
    (tmp_path / 'tools' / 'systemctl').write_text(FAKE_SYSTEMCTL)
    (tmp_path / 'tools' / 'systemctl').chmod(0o755)
    return tmp_path


def add(host, provider, instance, result='success', state='inactive', started=NOW - 3600, newest=NOW - 3500,
        late_after=93600, script_rc=0):
    job = f'{provider}-backup-{instance}'
    (host / 'state' / f'{job}.json').write_text('{"files": [], "timers": []}')
    (host / 'units' / f'{job}.service').write_text(
        f'ActiveState={state}\nResult={result}\nExecMainStartTimestamp={"@" + str(started) if started else ""}\n')
    # As systemd shows it: a timer's next elapse in the human form, whatever --timestamp says.
    next_run = time.strftime('%a %Y-%m-%d %H:%M:%S UTC', time.gmtime(NOW + 7200))
    (host / 'units' / f'{job}.timer').write_text(f'NextElapseUSecRealtime={next_run}\n')
    script = host / 'bin' / f'{provider}-restore-{instance}'
    script.write_text(restore_script('' if newest is None else str(newest), late_after, script_rc))
    script.chmod(0o755)


def status(host, *args):
    env = dict(os.environ, PATH=f'{host / "tools"}:{os.environ["PATH"]}', FAKE_UNITS=str(host / 'units'),
               SELFHOST_BACKUP_STATE_DIR=str(host / 'state'), SELFHOST_BACKUP_SCRIPT_DIR=str(host / 'bin'))
    return subprocess.run([sys.executable, str(STATUS), 'status', *args], capture_output=True, text=True, env=env,
                          check=False)


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='selfhost-backup status runs as root only')


def test_all_fine_exits_0_with_a_line_each(host):
    add(host, 'restic', 'app')
    add(host, 'borg', 'app')
    (host / 'state' / 'unrelated.json').write_text('{}')
    result = status(host)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('borg    app ') and lines[0].endswith(': OK')
    assert '(success)' in lines[1] and 'newest snapshot 58m ago' in lines[1]


def test_json_names_every_field(host):
    add(host, 'restic', 'db', late_after=600)
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['provider'] == 'restic' and entry['instance'] == 'db'
    assert entry['service'] == 'restic-backup-db.service'
    assert entry['result'] == 'success' and entry['last_run'] == NOW - 3600
    assert entry['newest_snapshot'] == NOW - 3500 and entry['late_after'] == 600
    assert entry['next_run'] == NOW + 7200
    assert entry['ok'] is False and entry['problems'] == ['late']  # 3500 s > 600 s


@pytest.mark.parametrize('changes, problems', [
    ({'result': 'exit-code', 'state': 'failed'}, ['failed']),
    ({'newest': None}, ['late']),
    ({'newest': NOW - 100000}, ['late']),
    ({'result': 'exit-code', 'state': 'failed', 'newest': NOW - 100000}, ['failed', 'late']),
    ({'script_rc': 1}, ['unreadable']),
])
def test_failed_late_or_unreadable_exit_1(host, changes, problems):
    add(host, 'restic', 'ok')
    add(host, 'borg', 'bad', **changes)
    result = status(host, '--json')
    assert result.returncode == 1
    entries = {entry['instance']: entry for entry in json.loads(result.stdout)}
    assert entries['ok']['ok'] is True
    assert entries['bad']['problems'] == problems
    text = status(host)
    assert text.returncode == 1 and ', '.join(problems).upper() in text.stdout


def test_never_run_is_late_but_not_failed(host):
    add(host, 'restic', 'new', result='success', started=None, newest=None)
    entry = json.loads(status(host, '--json').stdout)[0]
    assert entry['result'] == 'never run' and entry['problems'] == ['late']


def test_no_instance(host):
    result = status(host)
    assert result.returncode == 0 and result.stdout == 'no backup instance on this host\n'
