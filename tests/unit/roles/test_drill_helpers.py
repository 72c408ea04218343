# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The requesters' restore drills (the request's drill_cmd) against real databases where this host has them:
SQLite always, PostgreSQL when its server tools are installed (run as an unprivileged user). A drill restores
into a scratch copy of its own, runs the checks there, removes the copy, and fails on a cut dump or a false
check, naming it. The contract molecule scenario runs every drill against the real servers."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
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
    for dummy in range(100):
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


# PostgreSQL: a "live" cluster of the test's own, and the drills, all run as an unprivileged user (initdb refuses
# root). The drill gets PGHOST of the live cluster in its environment: it must still never connect to it.
PG_USER = 'nobody'
PG_BIN = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'))


def as_pg_user(*argv: str, env: dict | None = None, stdin: bytes = b'', check: bool = True) -> subprocess.CompletedProcess:
    command = ['runuser', '-u', PG_USER, '--', 'env', *[f'{k}={v}' for k, v in (env or {}).items()], *argv]
    result = subprocess.run(command, input=stdin, capture_output=True, check=False, cwd='/')
    assert not check or result.returncode == 0, result.stderr.decode()
    return result


@pytest.fixture(scope='module')
def pg_world():
    if os.geteuid() != 0 or not PG_BIN:
        pytest.skip('needs root and the PostgreSQL server tools')
    bindir = PG_BIN[-1].parent
    # Not below pytest's own temporary directory, which only root may enter.
    top = Path(tempfile.mkdtemp(prefix='selfhost-backup-pg-test.'))
    top.chmod(0o755)
    world = top / 'world'
    world.mkdir()
    shutil.chown(world, PG_USER)
    script = install(top / 'bin', 'postgresql')
    live = world / 'live'
    as_pg_user(str(bindir / 'initdb'), f'--pgdata={live}', f'--username={PG_USER}', '--auth-local=peer', '--no-locale',
               '--encoding=UTF8', '--no-sync')
    (live / 'postgresql.conf').open('a').write(f"listen_addresses = ''\nunix_socket_directories = '{world}'\nport = 5499\n")
    server = subprocess.Popen(['runuser', '-u', PG_USER, '--', str(bindir / 'postgres'), '-D', str(live)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd='/')
    env = {'PGHOST': str(world), 'PGPORT': '5499', 'PATH': f'{bindir}:{os.environ["PATH"]}', 'TMPDIR': str(world / 'tmp')}
    as_pg_user('mkdir', str(world / 'tmp'))
    try:
        for dummy in range(100):
            if as_pg_user('pg_isready', '-q', '-d', 'postgres', env=env, check=False).returncode == 0:
                break
            time.sleep(0.1)
        psql = ['psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1']
        as_pg_user(*psql, '-d', 'postgres', '-c', 'CREATE DATABASE fixture', env=env)
        as_pg_user(*psql, '-d', 'postgres', '-c', 'CREATE ROLE app LOGIN', env=env)
        as_pg_user(*psql, '-d', 'fixture', env=env, stdin=(
            "CREATE TABLE t (id int PRIMARY KEY, v text); GRANT SELECT ON t TO app;"
            "INSERT INTO t VALUES (1, 'it''s \"q\" \\ $HOME `x` % ü'), (2, E'line\\n-- PostgreSQL database cluster dump complete');"
        ).encode())
        dumps = {kind: as_pg_user(str(script), 'dump', *kind.split(), env=env).stdout
                 for kind in ('cluster', 'globals', 'database fixture')}
        yield script, env, dumps, world, psql
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(top)


def pg_live(pg_world) -> str:
    script, env, dumps, world, psql = pg_world
    return as_pg_user(*psql, '-d', 'fixture', '-c', "SELECT json_agg(t ORDER BY id) FROM t", env=env).stdout.decode() \
        + as_pg_user(*psql, '-d', 'postgres', '-c', 'SELECT datname FROM pg_database ORDER BY 1', env=env).stdout.decode()


def pg_drill(pg_world, *args: str, dump: bytes) -> subprocess.CompletedProcess:
    script, env, dumps, world, psql = pg_world
    return as_pg_user(str(script), 'drill', *args, env=env, stdin=dump, check=False)


def pg_leftovers(pg_world) -> list[str]:
    script, env, dumps, world, psql = pg_world
    processes = subprocess.run(['ps', '-ww', '-u', PG_USER, '-o', 'args='], capture_output=True, text=True, check=False).stdout
    # This world's drills only: another test run on the host (same user) has drills of its own.
    return leftovers(world / 'tmp') + [line for line in processes.splitlines()
                                       if 'selfhost-backup-drill' in line and str(world) in line]


CLUSTER_CHECK = ('fixture', "SELECT count(*) = 2 FROM t WHERE v = 'it''s \"q\" \\ $HOME `x` % ü' OR id = 2")


@pytest.mark.parametrize('kind, checks', [
    ('cluster', [CLUSTER_CHECK, ('postgres', "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app')")]),
    ('globals', [('postgres', "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app'")]),
    ('database fixture', [CLUSTER_CHECK]),
])
def test_postgresql_drill_of_a_good_dump_passes_in_a_scratch_cluster(pg_world, kind, checks):
    before = pg_live(pg_world)
    args = [arg for check in checks for arg in ('--check', *check)]
    result = pg_drill(pg_world, *args, *kind.split(), dump=pg_world[2][kind])
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    for database, query in checks:
        assert f'drill check passed in database {database}: {query}' in stderr
    assert f'drill passed: the {kind.split()[0]} dump restores into a scratch cluster, {len(checks)} checks passed' in stderr
    assert pg_live(pg_world) == before
    assert pg_leftovers(pg_world) == []


@pytest.mark.parametrize('kind', ['cluster', 'globals', 'database fixture'])
def test_postgresql_drill_of_a_cut_dump_fails(pg_world, kind):
    dump = pg_world[2][kind]
    before = pg_live(pg_world)
    cuts = [len(dump) // 2, len(dump) - 30]
    if kind == 'cluster':  # right after the row that reads like the closing comment
        row = b'-- PostgreSQL database cluster dump complete'
        cuts.append(dump.index(row) + len(row) + 1)
    for cut in cuts:
        result = pg_drill(pg_world, *kind.split(), dump=dump[:cut])
        assert result.returncode != 0, (cut, result.stderr)
        assert 'drill failed: the ' in result.stderr.decode(), result.stderr
        assert pg_leftovers(pg_world) == []
    assert pg_live(pg_world) == before


@pytest.mark.parametrize('check, words', [
    (('fixture', 'SELECT count(*) > 2 FROM t'), "drill failed: the check in database fixture returned 'f', not true: "
                                                'SELECT count(*) > 2 FROM t'),
    (('fixture', 'SELECT 1/0 = 1'), 'division by zero'),
    (('fixture', 'SELECT nope FROM t'), 'drill failed: the check in database fixture could not run (the error is '
                                        'above): SELECT nope FROM t'),
    (('missing', 'SELECT true'), 'drill failed: the check in database missing could not run'),
    (("host=/ dbname=postgres", 'SELECT true'), 'database "host=/ dbname=postgres" does not exist'),
])
def test_postgresql_drill_fails_on_a_false_or_failing_check_naming_it(pg_world, check, words):
    before = pg_live(pg_world)
    result = pg_drill(pg_world, '--check', 'fixture', 'SELECT true', '--check', *check, 'cluster',
                      dump=pg_world[2]['cluster'])
    assert result.returncode != 0
    assert words in result.stderr.decode(), result.stderr
    assert pg_live(pg_world) == before
    assert pg_leftovers(pg_world) == []


def test_postgresql_drill_killed_stops_its_server_and_removes_the_scratch_cluster(pg_world):
    script, env, dumps, world, psql = pg_world
    # As the user itself, as a provider's unit runs it (runuser would SIGKILL the helper 2 s after a TERM).
    process = subprocess.Popen([str(script), 'drill', 'cluster'], stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd='/',
                               start_new_session=True, user=PG_USER, group=pwd.getpwnam(PG_USER).pw_gid,
                               extra_groups=[], env=dict(os.environ, **env))
    assert process.stdin is not None
    dump = dumps['cluster']
    process.stdin.write(dump[:len(dump) // 2])
    process.stdin.flush()
    for dummy in range(300):  # the scratch server is up
        if any('postgres -D' in line for line in pg_leftovers(pg_world)):
            break
        time.sleep(0.1)
    assert any('postgres -D' in line for line in pg_leftovers(pg_world)), pg_leftovers(pg_world)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) != 0
    process.stdin.close()
    assert pg_leftovers(pg_world) == []


def test_postgresql_drill_rewrites_tablespaces_into_the_scratch_cluster(pg_world):
    """A tablespace of the live cluster is created in place in the scratch one, never in the live directory."""
    dump = pg_world[2]['cluster'].replace(
        b'\n\\connect template1\n',
        b"\nCREATE TABLESPACE drill_ts OWNER nobody LOCATION '/nonexistent/live-ts';\n\\connect template1\n", 1)
    result = pg_drill(pg_world, '--check', 'postgres', "SELECT count(*) = 1 FROM pg_tablespace WHERE spcname = 'drill_ts'",
                      'cluster', dump=dump)
    assert result.returncode == 0, result.stderr.decode()
    assert not Path('/nonexistent/live-ts').exists()


@pytest.mark.skipif(bool(shutil.which('mariadbd') or Path('/usr/sbin/mariadbd').exists()), reason='MariaDB is installed')
def test_mariadb_drill_without_the_server_tools_fails_clearly_and_leaves_nothing(tmp_path):
    """The contract scenario runs the MariaDB drill against a real server; here only what it says without one."""
    script = install(tmp_path / 'bin', 'mariadb')
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    result = subprocess.run([str(script), 'drill', '--check', 'app', 'SELECT 1'], input=b'-- Dump completed\n',
                            capture_output=True, env=dict(os.environ, TMPDIR=str(scratch)), check=False)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == (
        'mariadb-databasebackup: drill: mariadb-install-db is not installed on this host (the package mariadb-server)')
    assert leftovers(scratch) == []


@pytest.mark.parametrize('args', [['drill', '--check', 'app'], ['drill', '--check', '', 'SELECT 1'],
                                  ['drill', '--check', 'app', ''], ['drill', 'extra'], ['drill', '--databases', 'a']])
def test_mariadb_drill_rejects_bad_arguments(tmp_path, args):
    script = install(tmp_path / 'bin', 'mariadb')
    result = subprocess.run([str(script), *args], input=b'', capture_output=True, check=False)
    assert result.returncode == 2
    assert result.stderr.decode().startswith('usage:')


@pytest.mark.parametrize('args', [['drill'], ['drill', 'cluster', 'extra'], ['drill', 'database'],
                                  ['drill', '--check', 'db', 'cluster'], ['drill', '--check', '', 'q', 'cluster'],
                                  ['drill', 'globals', '--check', 'db', 'q']])
def test_postgresql_drill_rejects_bad_arguments(tmp_path, args):
    script = install(tmp_path / 'bin', 'postgresql')
    result = subprocess.run([str(script), *args], input=b'', capture_output=True, check=False)
    assert result.returncode == 2
    assert result.stderr.decode().startswith('usage:')
