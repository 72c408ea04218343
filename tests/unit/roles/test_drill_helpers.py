# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The requesters' restore drills (the request's drill_cmd) against real databases where this host has them:
SQLite always, PostgreSQL when its server tools are installed (run as an unprivileged user). A drill restores
into a scratch copy of its own, runs the checks there, removes the copy, and fails on a cut dump or a false
check, naming it. The contract molecule scenario runs every drill against the real servers."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

ROLES = Path(__file__).resolve().parents[3] / 'roles'
# A check with every character a shell or SQL quoting could trip on.
UGLY = "select count(*) = 1 from t where v = 'it''s \"q\" \\ $HOME `x` % ü'"


def install(directory: Path, role: str) -> Path:
    """The role's helper as the role installs it: beside the shared library, mode 0755."""
    directory.mkdir(mode=0o755, exist_ok=True)
    script = directory / f'{role}-databasebackup'
    shutil.copyfile(ROLES / role / 'files' / f'{role}-databasebackup.sh', script)
    script.chmod(0o755)
    shutil.copy(ROLES / 'requester_common' / 'files' / 'databasebackup-lib.sh', directory)
    return script


def leftovers(tmp: Path) -> list[str]:
    return sorted(path.name for path in tmp.iterdir())


@pytest.fixture
def sqlite_world(tmp_path):
    if not shutil.which('sqlite3'):
        pytest.skip('sqlite3 is not installed')
    script = install(tmp_path / 'bin', 'sqlite')
    live = tmp_path / 'live.db'
    with sqlite3.connect(live) as db:
        db.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')
        db.execute('INSERT INTO t (v) VALUES (?)', ("it's \"q\" \\ $HOME `x` % ü",))
        db.execute('PRAGMA user_version = 7')
    db.close()
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    dump = subprocess.run([str(script), 'dump', str(live)], capture_output=True, env=env, check=True).stdout
    return script, live, scratch, env, dump


def drill(script: Path, env: dict, *args: str, dump: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], input=dump, capture_output=True, env=env, check=False)


def test_sqlite_drill_of_a_good_dump_passes_and_leaves_nothing(sqlite_world):
    script, live, scratch, env, dump = sqlite_world
    before = live.read_bytes()
    result = drill(script, env, 'drill', '--check', 'select user_version = 7 from pragma_user_version',
                   '--check', UGLY, dump=dump)
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert f'drill check passed: {UGLY}' in stderr
    assert 'drill passed: the dump restores, PRAGMA integrity_check ok, 2 checks passed' in stderr
    assert leftovers(scratch) == []
    assert live.read_bytes() == before


@pytest.mark.parametrize('cut', [0.5, -12, -2])  # -2: 'COMMIT' without its ';'
def test_sqlite_drill_of_a_cut_dump_fails(sqlite_world, cut):
    script, live, scratch, env, dump = sqlite_world
    end = int(len(dump) * cut) if isinstance(cut, float) else len(dump) + cut
    result = drill(script, env, 'drill', dump=dump[:end])
    assert result.returncode != 0
    assert 'the dump is incomplete or failed' in result.stderr.decode()
    assert 'drill failed: the dump does not restore' in result.stderr.decode()
    assert leftovers(scratch) == []


@pytest.mark.parametrize('query, words', [
    ('select count(*) > 1 from t', "returned '0', not true: select count(*) > 1 from t"),
    ("select 'yes'", "returned 'yes', not true: select 'yes'"),
    ('select 1 union all select 1', "returned '1 1', not true"),
    ('select count(*) from nope', 'the check could not run (the error is above): select count(*) from nope'),
    ("attach '/etc/passwd' as x", "the check could not run (the error is above): attach '/etc/passwd' as x"),
    ('delete from t', 'attempt to write a readonly database'),  # read-only: it changes nothing
])
def test_sqlite_drill_fails_on_a_false_or_failing_check_naming_it(sqlite_world, query, words):
    script, live, scratch, env, dump = sqlite_world
    before = live.read_bytes()
    result = drill(script, env, 'drill', '--check', 'select 1', '--check', query, dump=dump)
    assert result.returncode != 0
    assert words in result.stderr.decode(), result.stderr
    assert leftovers(scratch) == []
    assert live.read_bytes() == before


def test_sqlite_drill_killed_removes_its_scratch_copy(sqlite_world):
    """Stopped (TERM to its process group, as systemd stops a unit) while it waits for the rest of the dump."""
    script, live, scratch, env, dump = sqlite_world
    process = subprocess.Popen([str(script), 'drill'], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(dump[:len(dump) // 2])
    process.stdin.flush()
    for _ in range(100):
        if leftovers(scratch):
            break
        time.sleep(0.05)
    assert len(leftovers(scratch)) == 1 and leftovers(scratch)[0].startswith('selfhost-backup-drill.')
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    process.stdin.close()
    assert leftovers(scratch) == []


@pytest.mark.parametrize('args', [['drill', '--check'], ['drill', '--check', ''], ['drill', 'extra']])
def test_sqlite_drill_rejects_bad_arguments(sqlite_world, args):
    script, live, scratch, env, dump = sqlite_world
    result = drill(script, env, *args, dump=dump)
    assert result.returncode == 2
    assert result.stderr.decode().startswith('usage:')
