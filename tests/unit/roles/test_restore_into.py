# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The requesters' restore_into_cmd and restore_database_cmd (the restore script's restore --into and --database):
SQLite and PostgreSQL against real databases where this host has them, MariaDB against the fake client. The names
come in the environment only; a name the helper does not take, or a target that exists, is refused before
anything changes, and the original is never touched. The contract molecule scenario runs them on real servers."""

from __future__ import annotations

import os
import pwd
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
# pylint: disable-next=unused-import
from test_drill_helpers import as_pg_user, pg_world, sqlite_world  # noqa: F401 (fixtures)
from test_requester_helpers import MARIADB_DUMP, mariadb  # noqa: F401 pylint: disable=unused-import

HOSTILE = ["x'; DROP TABLE t; --", 'x$(touch /tmp/selfhost-owned)', 'x`id`', 'x"y', '-x', '']


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        found = db.execute('SELECT id, v FROM t ORDER BY id').fetchall() + [db.execute('PRAGMA user_version').fetchone()]
    db.close()
    return found


def sqlite_into(sqlite_world, into: str, dump: bytes | None = None) -> subprocess.CompletedProcess:
    script, live, scratch, env, good = sqlite_world
    return subprocess.run([str(script), 'restore-into', str(live)], input=good if dump is None else dump,
                          capture_output=True, env=dict(env, SELFHOST_BACKUP_INTO=into), check=False)


def test_sqlite_restore_into_makes_a_new_file_equal_value_by_value_and_leaves_the_original(sqlite_world):
    script, live, scratch, env, dump = sqlite_world
    before = live.read_bytes()
    copy = live.parent / 'copy.db'
    result = sqlite_into(sqlite_world, str(copy))
    assert result.returncode == 0, result.stderr
    assert rows(copy) == rows(live)
    assert live.read_bytes() == before
    assert copy.stat().st_mode == live.stat().st_mode
    assert sorted(p.name for p in live.parent.iterdir() if p.name.startswith('.')) == []


def test_sqlite_restore_into_never_replaces_a_file(sqlite_world):
    script, live, scratch, env, dump = sqlite_world
    other = live.parent / 'other.db'
    other.write_text('mine')
    result = sqlite_into(sqlite_world, str(other))
    assert result.returncode == 1
    assert f'{other} exists; a restore --into makes a new file and never replaces one' in result.stderr.decode()
    assert other.read_text() == 'mine'
    result = sqlite_into(sqlite_world, str(live))
    assert result.returncode == 1 and live.exists() and rows(live)


@pytest.mark.parametrize('into', HOSTILE + ['relative.db', '/tmp/../etc/x.db', '/nowhere/x.db'])
def test_sqlite_restore_into_refuses_a_path_it_does_not_take(sqlite_world, into):
    script, live, scratch, env, dump = sqlite_world
    before = sorted(p.name for p in live.parent.iterdir())
    result = sqlite_into(sqlite_world, into)
    assert result.returncode == 1
    assert 'nothing was restored' in result.stderr.decode()
    assert sorted(p.name for p in live.parent.iterdir()) == before
    assert not Path('/tmp/selfhost-owned').exists()


@pytest.mark.parametrize('suffix', ['-journal', '-wal', '-shm'])
def test_sqlite_restore_into_refuses_the_live_databases_journal_and_wal_names(sqlite_world, suffix):
    """A new file where SQLite looks for the live database's journal or WAL would be taken for it (review of 19)."""
    script, live, scratch, env, dump = sqlite_world
    before = sorted(p.name for p in live.parent.iterdir())
    result = sqlite_into(sqlite_world, f'{live}{suffix}')
    assert result.returncode == 1
    assert 'where SQLite keeps the journal or WAL' in result.stderr.decode()
    assert sorted(p.name for p in live.parent.iterdir()) == before


def test_sqlite_restore_into_from_a_cut_dump_creates_nothing(sqlite_world):
    script, live, scratch, env, dump = sqlite_world
    copy = live.parent / 'copy.db'
    result = sqlite_into(sqlite_world, str(copy), dump=dump[:-10])
    assert result.returncode != 0
    assert not copy.exists()
    assert sorted(p.name for p in live.parent.iterdir() if p.name.startswith('.')) == []


# PostgreSQL: the test's own cluster (test_drill_helpers.pg_world), with the database fixture and the role app.

def pg(pg_world, database: str, query: str) -> str:
    script, env, dumps, world, psql = pg_world
    return as_pg_user(*psql, '-d', database, '-c', query, env=env).stdout.decode()


def databases(pg_world) -> list[str]:
    return pg(pg_world, 'postgres', 'SELECT datname FROM pg_database ORDER BY 1').split()


def helper(pg_world, *args: str, dump: bytes, **names: str) -> subprocess.CompletedProcess:
    script, env, dumps, world, psql = pg_world
    return as_pg_user(str(script), *args, env=dict(env, **names), stdin=dump, check=False)


def drop(pg_world, *names: str) -> None:
    for name in names:
        pg(pg_world, 'postgres', f'DROP DATABASE IF EXISTS "{name}"')


VALUES = 'SELECT json_agg(t ORDER BY id) FROM t'


@pytest.mark.parametrize('args, dump, names', [
    (['restore-into', 'database', 'fixture'], 'database fixture', {}),
    (['restore-database', 'cluster'], 'cluster', {'SELFHOST_BACKUP_DATABASE': 'fixture'}),
])
def test_postgresql_restore_into_a_new_database_equal_value_by_value_original_untouched(pg_world, args, dump, names):
    dumps = pg_world[2]
    before, listed = pg(pg_world, 'fixture', VALUES), databases(pg_world)
    try:
        result = helper(pg_world, *args, dump=dumps[dump], SELFHOST_BACKUP_INTO='fixture-copy.1', **names)
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'fixture-copy.1', VALUES) == before
        # The grants came along; the original and the other databases are as they were.
        assert pg(pg_world, 'fixture-copy.1', "SELECT has_table_privilege('app', 'public.t', 'SELECT')") == 't\n'
        assert pg(pg_world, 'fixture', VALUES) == before
        assert databases(pg_world) == sorted(listed + ['fixture-copy.1'])
    finally:
        drop(pg_world, 'fixture-copy.1')


def test_postgresql_one_database_out_of_the_cluster_dump_in_its_place_others_untouched(pg_world):
    dumps = pg_world[2]
    before = pg(pg_world, 'fixture', VALUES)
    pg(pg_world, 'fixture', "INSERT INTO t VALUES (3, 'after the backup')")
    pg(pg_world, 'postgres', 'CREATE DATABASE bystander')
    pg(pg_world, 'bystander', 'CREATE TABLE b (x int); INSERT INTO b VALUES (42)')
    try:
        result = helper(pg_world, 'restore-database', 'cluster', dump=dumps['cluster'], SELFHOST_BACKUP_DATABASE='fixture')
        assert result.returncode == 0, result.stderr.decode()
        assert 'database fixture of the cluster dump restored in its place' in result.stderr.decode()
        assert pg(pg_world, 'fixture', VALUES) == before
        # Not in the dump, so a whole-cluster restore would have dropped it: one database leaves it be.
        assert pg(pg_world, 'bystander', 'SELECT x FROM b') == '42\n'
        assert not any(name.startswith('selfhost_backup_restore') for name in databases(pg_world))
    finally:
        drop(pg_world, 'bystander')


@pytest.mark.parametrize('cut', [2000, -60])
def test_postgresql_one_database_out_of_a_cut_cluster_dump_changes_nothing(pg_world, cut):
    dumps = pg_world[2]
    before, listed = pg(pg_world, 'fixture', VALUES), databases(pg_world)
    for names in ({'SELFHOST_BACKUP_DATABASE': 'fixture'},
                  {'SELFHOST_BACKUP_DATABASE': 'fixture', 'SELFHOST_BACKUP_INTO': 'copy'}):
        result = helper(pg_world, 'restore-database', 'cluster', dump=dumps['cluster'][:cut], **names)
        assert result.returncode == 1
        assert 'the dump is incomplete' in result.stderr.decode()
        assert 'was dropped again: nothing else changed' in result.stderr.decode()
        assert pg(pg_world, 'fixture', VALUES) == before
        assert databases(pg_world) == listed


def test_postgresql_one_database_the_cluster_dump_does_not_hold_is_refused_naming_those_it_has(pg_world):
    listed = databases(pg_world)
    result = helper(pg_world, 'restore-database', 'cluster', dump=pg_world[2]['cluster'],
                    SELFHOST_BACKUP_DATABASE='fixture', SELFHOST_BACKUP_INTO='nothere')
    assert result.returncode == 0, result.stderr.decode()
    drop(pg_world, 'nothere')
    result = helper(pg_world, 'restore-database', 'cluster', dump=pg_world[2]['cluster'],
                    SELFHOST_BACKUP_DATABASE='nothere', SELFHOST_BACKUP_INTO='nothere2')
    assert result.returncode == 1
    assert 'the cluster dump holds no database nothere (it has: template1, fixture, postgres)' in result.stderr.decode() \
        or 'the cluster dump holds no database nothere (it has: template1, postgres, fixture)' in result.stderr.decode()
    assert databases(pg_world) == listed


@pytest.mark.parametrize('args, dump, names', [
    (['restore-into', 'database', 'fixture'], 'database fixture', {}),
    (['restore-database', 'cluster'], 'cluster', {'SELFHOST_BACKUP_DATABASE': 'fixture'}),
])
def test_postgresql_restore_into_a_database_that_exists_is_refused(pg_world, args, dump, names):
    before = pg(pg_world, 'postgres', 'SELECT count(*) FROM pg_database')
    for into in ('postgres', 'fixture'):
        result = helper(pg_world, *args, dump=pg_world[2][dump], SELFHOST_BACKUP_INTO=into, **names)
        assert result.returncode == 1
        assert 'nothing was restored' in result.stderr.decode() or 'give another name' in result.stderr.decode()
    assert pg(pg_world, 'postgres', 'SELECT count(*) FROM pg_database') == before


@pytest.mark.parametrize('name', HOSTILE)
@pytest.mark.parametrize('variable', ['SELFHOST_BACKUP_INTO', 'SELFHOST_BACKUP_DATABASE'])
def test_postgresql_refuses_a_name_it_does_not_take(pg_world, variable, name):
    listed = databases(pg_world)
    names = {'SELFHOST_BACKUP_DATABASE': 'fixture', variable: name}
    for args, dump in ((['restore-into', 'database', 'fixture'], 'database fixture'),
                       (['restore-database', 'cluster'], 'cluster')):
        if args[0] == 'restore-database' and variable == 'SELFHOST_BACKUP_INTO' and name == '':
            continue  # no --into: the restore in place, tested above
        result = helper(pg_world, *args, dump=pg_world[2][dump], **names)
        assert result.returncode == 1
        stderr = result.stderr.decode()
        if args[0] == 'restore-database' or variable == 'SELFHOST_BACKUP_INTO':
            assert ('is not a database name this takes' in stderr) or ('names no database' in stderr), stderr
    assert databases(pg_world) == listed
    assert not Path('/tmp/selfhost-owned').exists()


# MariaDB against the fake client: what the restore sends.

MARIADB_ONE = '''/*M!999999\\- enable the sandbox mode */
-- MariaDB dump
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `app` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;
USE `app`;
DROP TABLE IF EXISTS `t`;
DELIMITER ;;
CREATE PROCEDURE `p`()
BEGIN
USE `inside`;
END ;;
DELIMITER ;
INSERT INTO `t` VALUES ('USE `app`;');
-- Dump completed on 2026-12-06
'''


def test_mariadb_restore_into_aims_the_dump_at_the_new_database(mariadb):
    script, env = mariadb
    result = subprocess.run([str(script), 'restore-into', 'app'], input=MARIADB_ONE, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO='app_copy'), check=False)
    assert result.returncode == 0, result.stderr
    sent = (Path(env['FAKE']) / 'stream.sql').read_text().splitlines()
    # No IF NOT EXISTS: a database that exists fails the restore before any change.
    assert 'CREATE DATABASE `app_copy` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;' in sent
    assert 'USE `app_copy`;' in sent and 'USE `app`;' not in sent
    # Routines and data keep their text.
    assert 'USE `inside`;' in sent and "INSERT INTO `t` VALUES ('USE `app`;');" in sent


@pytest.mark.parametrize('dump, message', [
    (MARIADB_DUMP, 'the dump holds another database than app'),
    (MARIADB_ONE.replace('`app`', '`other`'), 'the dump holds another database than app'),
    (MARIADB_ONE[:-40], 'the dump is incomplete'),
])
def test_mariadb_restore_into_refuses_another_dump_and_a_cut_one(mariadb, dump, message):
    script, env = mariadb
    result = subprocess.run([str(script), 'restore-into', 'app'], input=dump, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO='app_copy'), check=False)
    assert result.returncode == 1
    assert message in result.stderr


def test_mariadb_restore_into_a_database_that_exists_is_refused(mariadb):
    script, env = mariadb
    (Path(env['FAKE']) / 'exists').write_text('1\n')
    result = subprocess.run([str(script), 'restore-into', 'app'], input=MARIADB_ONE, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO='app_copy'), check=False)
    assert result.returncode == 1
    assert 'database app_copy exists; a restore --into makes a new database and never replaces one' in result.stderr
    assert not (Path(env['FAKE']) / 'stream.sql').exists()


def test_mariadb_restore_into_that_fails_drops_only_the_database_it_created(mariadb):
    script, env = mariadb
    (Path(env['FAKE']) / 'mode').write_text('partial')
    result = subprocess.run([str(script), 'restore-into', 'app'], input=MARIADB_ONE, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO='app_copy'), check=False)
    assert result.returncode == 1
    assert (Path(env['FAKE']) / 'dropped').read_text() == 'DROP DATABASE `app_copy`\n'
    assert 'the database app_copy it had created was dropped again' in result.stderr


def test_mariadb_restore_into_killed_half_way_drops_the_database_it_created(mariadb):
    """MariaDB's DDL is not transactional: a restore --into stopped by a signal (Ctrl-C, a dropped ssh session) after
    the client made the database drops it again, or the retry refuses its name (review of issue 19)."""
    script, env = mariadb
    fake = Path(env['FAKE'])
    (fake / 'mode').write_text('hang')
    process = subprocess.Popen([str(script), 'restore-into', 'app'], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(env, SELFHOST_BACKUP_INTO='app_copy'), start_new_session=True)
    assert process.stdin is not None
    try:
        # Up to its CREATE DATABASE, and comment lines enough for the helper's awk filters to read and pass it on.
        head = MARIADB_ONE[:MARIADB_ONE.index('\nUSE `app`;') + 1]
        process.stdin.write(head.encode() + b'--\n' * 100000)
        process.stdin.flush()
        for dummy in range(200):
            if (fake / 'created').exists():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) != 0
    finally:
        process.stdin.close()
    assert (fake / 'dropped').read_text() == 'DROP DATABASE `app_copy`\n'


@pytest.mark.parametrize('into', HOSTILE + ['app'])
def test_mariadb_restore_into_refuses_a_name_it_does_not_take(mariadb, into):
    script, env = mariadb
    result = subprocess.run([str(script), 'restore-into', 'app'], input=MARIADB_ONE, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO=into), check=False)
    assert result.returncode == 1
    assert not (Path(env['FAKE']) / 'stream.sql').exists()
    assert not Path('/tmp/selfhost-owned').exists()


# Review of issue 19 (hostile operator): the in-place swap of restore --database, a database that is gone, what a
# killed restore leaves, and the database's own properties.

def pg_helper_started(pg_world, *args: str, **names: str) -> subprocess.Popen:
    """The helper as the request's user, its stdin open: the test feeds the dump (and can stop half way)."""
    script, env, dumps, world, psql = pg_world
    return subprocess.Popen([str(script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **as_nobody(env, **names))


def as_nobody(env: dict, **names: str) -> dict:
    """Popen's arguments for a process of the user itself, as a provider's unit starts it (setpriv): runuser would
    SIGKILL it 2 s after a TERM, in the middle of its cleanup when the machine is busy."""
    return {'cwd': '/', 'user': 'nobody', 'group': pwd.getpwnam('nobody').pw_gid, 'extra_groups': [],
            'env': dict(os.environ, **env, **names)}


def wait_for_database(pg_world, prefix: str) -> str:
    for dummy in range(200):
        found = [name for name in databases(pg_world) if name.startswith(prefix)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f'no database {prefix}* appeared')


# Comment lines after the fixture's \\connect, passed on to psql: enough for awk to read past them (mawk reads its
# input in blocks) and make the work copy from the dump's CREATE DATABASE in that section.
PADDING = b'--\n' * 40000


def into_the_fixture_section(cluster: bytes) -> int:
    return cluster.index(b'\\connect fixture\n') + len(b'\\connect fixture\n')


def test_postgresql_in_place_swap_never_leaves_the_database_dropped_when_another_session_is_on_the_copy(pg_world):
    """A monitoring agent (or an administrator) connected to the restore's temporary database makes the rename fail
    after the original was dropped: the live database is gone by its name (an outage until someone renames by hand).
    The swap must check the copy before it drops the original (or rename the original aside first)."""
    script, env, dumps, world, psql = pg_world
    before = pg(pg_world, 'fixture', VALUES)
    cluster = dumps['cluster']
    process = pg_helper_started(pg_world, 'restore-database', 'cluster', SELFHOST_BACKUP_DATABASE='fixture')
    assert process.stdin is not None
    agent = None
    try:
        half = into_the_fixture_section(cluster)
        process.stdin.write(cluster[:half] + PADDING)
        process.stdin.flush()
        temporary = wait_for_database(pg_world, 'selfhost_backup_restore_')
        agent = client_on(pg_world, temporary, 20)
        process.stdin.write(cluster[half:])
        process.stdin.close()
        process.wait(timeout=60)
        stderr = process.stderr.read().decode() if process.stderr else ''
        assert 'fixture' in databases(pg_world), f'the live database was dropped and left under another name: {stderr}'
        assert pg(pg_world, 'fixture', VALUES) == before
    finally:
        if agent:
            agent.kill()
            agent.wait()
        for name in databases(pg_world):
            if name.startswith('selfhost_backup_restore_'):
                pg(pg_world, 'postgres', 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                                         f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
                time.sleep(0.5)
                if 'fixture' not in databases(pg_world):
                    pg(pg_world, 'postgres', f'ALTER DATABASE "{name}" RENAME TO fixture')
                else:
                    drop(pg_world, name)


@pytest.mark.parametrize('names', [{'SELFHOST_BACKUP_DATABASE': 'fixture'},
                                   {'SELFHOST_BACKUP_DATABASE': 'fixture', 'SELFHOST_BACKUP_INTO': 'killed_copy'}])
def test_postgresql_killed_restore_of_one_database_leaves_no_database_it_created(pg_world, names):
    """Stopped half way (TERM to its process group: an operator's Ctrl-C, a dropped ssh session): the database it
    created (the temporary copy, or the --into target, empty after the rollback) is dropped, as on a failure; a
    left --into target makes the next 'restore --into' of the same name fail with 'exists'."""
    listed = databases(pg_world)
    process = pg_helper_started(pg_world, 'restore-database', 'cluster', **names)
    assert process.stdin is not None
    try:
        cluster = pg_world[2]['cluster']
        process.stdin.write(cluster[:into_the_fixture_section(cluster)] + PADDING)
        process.stdin.flush()
        # Both restore into a work copy of their own first (an --into target gets its name only at the end).
        wait_for_database(pg_world, 'selfhost_backup_restore_')
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        process.stdin.close()
        time.sleep(0.5)
        assert databases(pg_world) == listed, process.stderr.read().decode() if process.stderr else ''
    finally:
        for name in databases(pg_world):
            if name not in listed:
                drop(pg_world, name)


def test_postgresql_one_database_that_is_gone_can_be_restored_by_its_name(pg_world):
    """The 3 a.m. case: a database was dropped by mistake. Today 'restore --database gone' says 'give --into <name>',
    and '--database gone --into gone' says 'leave --into out': no way to get it back under its own name."""
    pg(pg_world, 'postgres', 'CREATE DATABASE gone')
    pg(pg_world, 'gone', "CREATE TABLE g (x int); INSERT INTO g VALUES (7)")
    try:
        cluster = helper(pg_world, 'dump', 'cluster', dump=b'').stdout
        drop(pg_world, 'gone')
        result = helper(pg_world, 'restore-database', 'cluster', dump=cluster, SELFHOST_BACKUP_DATABASE='gone')
        if result.returncode != 0:
            result = helper(pg_world, 'restore-database', 'cluster', dump=cluster, SELFHOST_BACKUP_DATABASE='gone',
                            SELFHOST_BACKUP_INTO='gone')
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'gone', 'SELECT x FROM g') == '7\n'
    finally:
        drop(pg_world, 'gone')


@pytest.mark.parametrize('names', [{'SELFHOST_BACKUP_DATABASE': 'latin'},
                                   {'SELFHOST_BACKUP_DATABASE': 'latin', 'SELFHOST_BACKUP_INTO': 'latin_copy'}])
def test_postgresql_one_database_keeps_its_encoding_and_connection_limit(pg_world, names):
    """The dump's CREATE DATABASE (encoding, locale, tablespace, connection limit) is dropped and the database made
    with createdb --template=template0: a LATIN1 database restored in its place silently becomes UTF8 (with another
    locale, its collation changes too). A whole-cluster restore keeps them."""
    pg(pg_world, 'postgres', "CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                             'CONNECTION LIMIT 7')
    pg(pg_world, 'latin', "CREATE TABLE l (v text); INSERT INTO l VALUES ('caf\u00e9')")
    target = names.get('SELFHOST_BACKUP_INTO', 'latin')
    query = f"SELECT pg_encoding_to_char(encoding), datconnlimit FROM pg_database WHERE datname = '{target}'"
    try:
        cluster = helper(pg_world, 'dump', 'cluster', dump=b'').stdout
        result = helper(pg_world, 'restore-database', 'cluster', dump=cluster, **names)
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'postgres', query) == 'LATIN1|7\n'
        assert pg(pg_world, target, 'SELECT v FROM l') == 'caf\u00e9\n'
    finally:
        drop(pg_world, 'latin', 'latin_copy')


@pytest.mark.parametrize('database', ['template1'])
def test_postgresql_one_database_in_place_of_a_system_database_is_refused_before_restoring_and_leaves_nothing(
        pg_world, database):
    """'restore --database template1' restores the whole database into a copy, then fails to drop template1; the
    copy got the dump's ALTER DATABASE template1 IS_TEMPLATE = true (aimed at the copy), so its own dropdb fails too
    and an undroppable template database selfhost_backup_restore_<pid> stays, while the message says 'nothing
    changed'. (postgres also restores in full before it fails, 'cannot drop the currently open database', but leaves nothing.)"""
    listed = databases(pg_world)
    try:
        result = helper(pg_world, 'restore-database', 'cluster', dump=pg_world[2]['cluster'],
                        SELFHOST_BACKUP_DATABASE=database)
        assert result.returncode == 1
        assert databases(pg_world) == listed, result.stderr.decode()
    finally:
        for name in databases(pg_world):
            if name not in listed:
                pg(pg_world, 'postgres', f'ALTER DATABASE "{name}" IS_TEMPLATE = false')
                drop(pg_world, name)


# restore --into of a per-database request (pg_dump --format=custom): the new database is made from the dump's own
# CREATE DATABASE (encoding, locale provider, LC_COLLATE, LC_CTYPE, ICU locale), not from the cluster's defaults.

ATTRIBUTES = ("SELECT pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider, coalesce(daticulocale, '-') "
              "FROM pg_database WHERE datname = '{}'")
# Non-ASCII values that exist in LATIN1, and an order that differs between C and a linguistic collation.
ODD = ['caf\u00e9', '\u00c9t\u00e9', 'na\u00efve \u00fc\u00df', 'Zebra', 'apple', '\u00e5ngstr\u00f6m', "it's \"q\" \\"]


@pytest.mark.parametrize('create', [
    "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    "ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
    "ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C.UTF-8'",
], ids=['latin1-c', 'libc-c.utf8', 'icu-de'])
def test_postgresql_restore_into_keeps_the_dumped_databases_encoding_and_locale(pg_world, create):
    """The copy was made by createdb --template=template0 (the cluster's UTF8 and C): a LATIN1 database, or one with
    its own collation, came back with another encoding or sort order and no word said."""
    drop(pg_world, 'odd', 'odd_copy')
    pg(pg_world, 'postgres', f'CREATE DATABASE odd TEMPLATE template0 {create}')
    try:
        values = ', '.join("(" + str(i) + ", '" + v.replace("'", "''") + "')" for i, v in enumerate(ODD))
        pg(pg_world, 'odd', f'CREATE TABLE o (id int PRIMARY KEY, v text); INSERT INTO o VALUES {values}')
        sorted_values = 'SELECT json_agg(v ORDER BY v) FROM o'
        before = [pg(pg_world, 'postgres', ATTRIBUTES.format('odd')), pg(pg_world, 'odd', 'SELECT json_agg(o ORDER BY id) FROM o'),
                  pg(pg_world, 'odd', sorted_values)]
        assert before[0] != pg(pg_world, 'postgres', ATTRIBUTES.format('postgres')), 'not a non-default database'
        dump = helper(pg_world, 'dump', 'database', 'odd', dump=b'').stdout
        result = helper(pg_world, 'restore-into', 'database', 'odd', dump=dump, SELFHOST_BACKUP_INTO='odd_copy')
        assert result.returncode == 0, result.stderr.decode()
        after = [pg(pg_world, 'postgres', ATTRIBUTES.format('odd_copy')), pg(pg_world, 'odd_copy', 'SELECT json_agg(o ORDER BY id) FROM o'),
                 pg(pg_world, 'odd_copy', sorted_values)]
        assert after == before
        # Value by value, as the client reads them (UTF8 on the wire whatever the database keeps).
        assert pg(pg_world, 'odd_copy', 'SELECT v FROM o ORDER BY id').splitlines() == ODD
        assert pg(pg_world, 'odd', 'SELECT v FROM o ORDER BY id').splitlines() == ODD
    finally:
        drop(pg_world, 'odd', 'odd_copy')


def test_postgresql_restore_into_reads_a_table_of_contents_larger_than_the_first_piece(pg_world):
    """The archive head is read in doubling pieces until pg_restore can list it: a dump whose table of contents
    (many objects with long comments) outgrows the first MiB still restores whole, into the dump's encoding."""
    drop(pg_world, 'many', 'many_copy')
    pg(pg_world, 'postgres', "CREATE DATABASE many TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        pg(pg_world, 'many', "DO $$ BEGIN FOR i IN 1..400 LOOP EXECUTE format('CREATE TABLE t%s (v text); "
                             "COMMENT ON TABLE t%s IS %L; INSERT INTO t%s VALUES (%L)', i, i, repeat('\u00e9', 4000), i, "
                             "'caf\u00e9 ' || i); END LOOP; END $$")
        dump = helper(pg_world, 'dump', 'database', 'many', dump=b'').stdout
        result = helper(pg_world, 'restore-into', 'database', 'many', dump=dump, SELFHOST_BACKUP_INTO='many_copy')
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'postgres', ATTRIBUTES.format('many_copy')).startswith('LATIN1|C|C|')
        assert pg(pg_world, 'many_copy', 'SELECT v FROM t400') == 'caf\u00e9 400\n'
        assert pg(pg_world, 'many_copy', "SELECT count(*) FROM pg_class WHERE relname ~ '^t[0-9]+$'") == '400\n'
    finally:
        drop(pg_world, 'many', 'many_copy')


@pytest.mark.parametrize('cut', [10, 100, 1000])
def test_postgresql_restore_into_from_a_cut_archive_creates_nothing(pg_world, cut):
    listed = databases(pg_world)
    dump = pg_world[2]['database fixture']
    result = helper(pg_world, 'restore-into', 'database', 'fixture', dump=dump[:cut], SELFHOST_BACKUP_INTO='cut_copy')
    assert result.returncode == 1
    assert 'nothing was restored' in result.stderr.decode() or 'nothing changed' in result.stderr.decode()
    assert databases(pg_world) == listed


# The check the restore script runs before it opens the repository (SELFHOST_BACKUP_CHECK=1, no input): the same
# refusals as the restore, exit 0 for names that pass, and nothing read or made either way.

@pytest.mark.parametrize('args, names, message', [
    (['restore-into', 'database', 'fixture'], {'SELFHOST_BACKUP_INTO': 'fixture'}, 'that is the database of this request'),
    (['restore-into', 'database', 'fixture'], {'SELFHOST_BACKUP_INTO': 'template1'}, 'a system database is never restored'),
    (['restore-into', 'database', 'fixture'], {'SELFHOST_BACKUP_INTO': '/srv/x.db'}, 'is not a database name this takes'),
    (['restore-into', 'database', 'fixture'], {'SELFHOST_BACKUP_INTO': 'postgres'}, 'a system database is never restored'),
    (['restore-database', 'cluster'], {'SELFHOST_BACKUP_DATABASE': 'postgres'}, 'a system database is never restored'),
    (['restore-database', 'cluster'], {'SELFHOST_BACKUP_DATABASE': 'fixture', 'SELFHOST_BACKUP_INTO': 'postgres'},
     'a system database is never restored'),
    (['restore-database', 'cluster'], {'SELFHOST_BACKUP_DATABASE': 'fixture', 'SELFHOST_BACKUP_INTO': 'fixture'},
     'that is the database restored'),
    (['restore-database', 'cluster'], {'SELFHOST_BACKUP_DATABASE': 'x y'}, 'is not a database name this takes'),
])
def test_postgresql_check_only_refuses_as_the_restore_does(pg_world, args, names, message):
    listed = databases(pg_world)
    result = helper(pg_world, *args, dump=b'', SELFHOST_BACKUP_CHECK='1', **names)
    assert result.returncode == 1
    assert message in result.stderr.decode()
    assert databases(pg_world) == listed


@pytest.mark.parametrize('args, names', [
    (['restore-into', 'database', 'fixture'], {'SELFHOST_BACKUP_INTO': 'checked_copy'}),
    (['restore-database', 'cluster'], {'SELFHOST_BACKUP_DATABASE': 'fixture'}),
    (['restore-database', 'cluster'], {'SELFHOST_BACKUP_DATABASE': 'fixture', 'SELFHOST_BACKUP_INTO': 'checked_copy'}),
])
def test_postgresql_check_only_passes_good_names_and_reads_and_makes_nothing(pg_world, args, names):
    listed = databases(pg_world)
    # A dump on stdin that a restore would take: the check leaves it unread and makes nothing.
    dump = pg_world[2]['database fixture' if args[0] == 'restore-into' else 'cluster']
    result = helper(pg_world, *args, dump=dump, SELFHOST_BACKUP_CHECK='1', **names)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b''
    assert databases(pg_world) == listed


# The check mode of SQLite and MariaDB (SELFHOST_BACKUP_CHECK=1): the restore's refusals, nothing read or made.

def test_sqlite_check_only_passes_a_good_path_and_makes_nothing(sqlite_world):
    script, live, scratch, env, dump = sqlite_world
    before = sorted(p.name for p in live.parent.iterdir())
    result = subprocess.run([str(script), 'restore-into', str(live)], input=dump, capture_output=True, check=False,
                            env=dict(env, SELFHOST_BACKUP_INTO=str(live.parent / 'copy.db'), SELFHOST_BACKUP_CHECK='1'))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert sorted(p.name for p in live.parent.iterdir()) == before


@pytest.mark.parametrize('into, message', [
    ('relative.db', 'is not a file path this takes'),
    ('{live}', 'exists; a restore --into makes a new file and never replaces one'),
    ('{live}-wal', 'where SQLite keeps the journal or WAL'),
    ('/tmp/' + 'x' * 240, 'is too long (at most 230)'),
    ('/nowhere/x.db', 'no directory /nowhere'),
])
def test_sqlite_check_only_refuses_as_the_restore_does(sqlite_world, into, message):
    script, live, scratch, env, dump = sqlite_world
    before = sorted(p.name for p in live.parent.iterdir())
    target = into.format(live=live, dir=live.parent)
    result = subprocess.run([str(script), 'restore-into', str(live)], input=b'', capture_output=True, check=False,
                            env=dict(env, SELFHOST_BACKUP_INTO=target, SELFHOST_BACKUP_CHECK='1'))
    assert result.returncode == 1
    assert message in result.stderr.decode()
    assert sorted(p.name for p in live.parent.iterdir()) == before


def test_mariadb_check_only_passes_a_new_name_and_sends_nothing(mariadb):
    script, env = mariadb
    result = subprocess.run([str(script), 'restore-into', 'app'], input=MARIADB_ONE, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO='app_copy', SELFHOST_BACKUP_CHECK='1'), check=False)
    assert result.returncode == 0, result.stderr
    assert not (Path(env['FAKE']) / 'stream.sql').exists()


@pytest.mark.parametrize('into, exists, message', [
    ('app', False, 'that is the database of this request'),
    ('app_copy', True, 'database app_copy exists'),
    ('x`y', False, 'is not a database name this takes'),
])
def test_mariadb_check_only_refuses_as_the_restore_does(mariadb, into, exists, message):
    script, env = mariadb
    if exists:
        (Path(env['FAKE']) / 'exists').write_text('1\n')
    result = subprocess.run([str(script), 'restore-into', 'app'], input='', capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_INTO=into, SELFHOST_BACKUP_CHECK='1'), check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (Path(env['FAKE']) / 'stream.sql').exists()


@pytest.mark.parametrize('check', ['1', ''])
@pytest.mark.parametrize('names', [{'SELFHOST_BACKUP_INTO': 'shop_copy'},
                                   {'SELFHOST_BACKUP_DATABASE': 'shop'},
                                   {'SELFHOST_BACKUP_DATABASE': 'shop', 'SELFHOST_BACKUP_INTO': 'shop_copy'}])
def test_mariadb_one_database_of_a_dump_of_several_is_refused_naming_why(mariadb, names, check):
    """A request of several databases publishes restore_into_cmd and restore_database_cmd that refuse, naming why
    (no transactional DDL and no RENAME DATABASE for a swap; cross-database references), in the check too."""
    script, env = mariadb
    result = subprocess.run([str(script), 'restore-several'], input=MARIADB_DUMP, capture_output=True, text=True,
                            env=dict(env, SELFHOST_BACKUP_CHECK=check, **names), check=False)
    assert result.returncode == 1
    assert "this request's dump holds several MariaDB databases, and one is not restored out of it alone" in result.stderr
    assert 'no transactional DDL, no RENAME DATABASE' in result.stderr
    assert 'Nothing was restored' in result.stderr
    assert not (Path(env['FAKE']) / 'stream.sql').exists()


def test_postgresql_restore_of_a_database_that_is_gone_makes_it_again_with_its_encoding_and_locale(pg_world):
    """'restore latest' of a per-database request after the database was dropped creates it again: from the dump's
    own CREATE DATABASE (LATIN1, C here), not the server's UTF8 defaults."""
    drop(pg_world, 'gone_latin')
    pg(pg_world, 'postgres', "CREATE DATABASE gone_latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        values = ', '.join("(" + str(i) + ", '" + v.replace("'", "''") + "')" for i, v in enumerate(ODD))
        pg(pg_world, 'gone_latin', f'CREATE TABLE o (id int PRIMARY KEY, v text); INSERT INTO o VALUES {values}')
        before = pg(pg_world, 'postgres', ATTRIBUTES.format('gone_latin'))
        dump = helper(pg_world, 'dump', 'database', 'gone_latin', dump=b'').stdout
        drop(pg_world, 'gone_latin')
        result = helper(pg_world, 'restore', 'database', 'gone_latin', dump=dump)
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'postgres', ATTRIBUTES.format('gone_latin')) == before == 'LATIN1|C|C|c|-\n'
        assert pg(pg_world, 'gone_latin', 'SELECT v FROM o ORDER BY id').splitlines() == ODD
        # A cut dump of a gone database leaves no database behind.
        drop(pg_world, 'gone_latin')
        result = helper(pg_world, 'restore', 'database', 'gone_latin', dump=dump[:-200])
        assert result.returncode == 1
        assert 'gone_latin' not in databases(pg_world)
    finally:
        drop(pg_world, 'gone_latin')


# A CREATE DATABASE that spans lines: a quoted value holds a newline (here the ICU locale, which PostgreSQL 15 keeps as
# given). It was read by a one-line pattern, found nothing, and the database was silently made with the cluster's
# defaults (UTF8, C, libc) instead of the dump's (review of issue 19).
SPANNING = "ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE E'de-DE\\n' LOCALE 'C.UTF-8'"
ICU_NEWLINE = "SELECT daticulocale = E'de-DE\\n' AND datlocprovider = 'i' FROM pg_database WHERE datname = '{}'"


def spanning_database(pg_world, name: str) -> str:
    drop(pg_world, name)
    pg(pg_world, 'postgres', f'CREATE DATABASE {name} TEMPLATE template0 {SPANNING}')
    pg(pg_world, name, "CREATE TABLE o (id int PRIMARY KEY, v text); INSERT INTO o VALUES (1, 'caf\u00e9')")
    assert pg(pg_world, 'postgres', ICU_NEWLINE.format(name)) == 't\n'
    return pg(pg_world, 'postgres', ATTRIBUTES.format(name))


def test_postgresql_restore_into_reads_a_create_database_that_spans_lines(pg_world):
    try:
        before = spanning_database(pg_world, 'spans')
        dump = helper(pg_world, 'dump', 'database', 'spans', dump=b'').stdout
        head = as_pg_user('pg_restore', '--create', '--schema-only', '--file=-', env=pg_world[1], stdin=dump).stdout
        assert b"ICU_LOCALE = 'de-DE\n';" in head, 'the dump no longer spans lines: the test tests nothing'
        result = helper(pg_world, 'restore-into', 'database', 'spans', dump=dump, SELFHOST_BACKUP_INTO='spans_copy')
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'postgres', ATTRIBUTES.format('spans_copy')) == before
        assert pg(pg_world, 'postgres', ICU_NEWLINE.format('spans_copy')) == 't\n'
        assert pg(pg_world, 'spans_copy', 'SELECT v FROM o') == 'caf\u00e9\n'
        # A plain restore of the request after its database was dropped makes it again the same way.
        drop(pg_world, 'spans')
        result = helper(pg_world, 'restore', 'database', 'spans', dump=dump)
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'postgres', ICU_NEWLINE.format('spans')) == 't\n'
        assert pg(pg_world, 'postgres', ATTRIBUTES.format('spans')) == before
    finally:
        drop(pg_world, 'spans', 'spans_copy')


def test_postgresql_one_database_of_the_cluster_dump_reads_a_create_database_that_spans_lines(pg_world):
    try:
        before = spanning_database(pg_world, 'spans')
        dump = helper(pg_world, 'dump', 'cluster', dump=b'').stdout
        assert b"ICU_LOCALE = 'de-DE\n';" in dump, 'the dump no longer spans lines: the test tests nothing'
        result = helper(pg_world, 'restore-database', 'cluster', dump=dump, SELFHOST_BACKUP_DATABASE='spans',
                        SELFHOST_BACKUP_INTO='spans_copy')
        assert result.returncode == 0, result.stderr.decode()
        assert pg(pg_world, 'postgres', ATTRIBUTES.format('spans_copy')) == before
        assert pg(pg_world, 'postgres', ICU_NEWLINE.format('spans_copy')) == 't\n'
        assert pg(pg_world, 'spans_copy', 'SELECT v FROM o') == 'caf\u00e9\n'
    finally:
        drop(pg_world, 'spans', 'spans_copy')


def test_postgresql_restore_into_fails_before_creating_anything_when_it_cannot_read_the_create_database(pg_world):
    """A pg_restore that writes the CREATE DATABASE another way than this reads (a future format, say): the helper
    says so and makes nothing, instead of a database with the server's defaults."""
    script, env, dumps, world, psql = pg_world
    wrapper = world / 'other-pg_restore'
    wrapper.mkdir(exist_ok=True)
    (wrapper / 'pg_restore').write_text(
        '#!/bin/sh\n'
        'case " $* " in *" --schema-only "*) ;; *) exec "$REAL_PG_RESTORE" "$@" ;; esac\n'
        '"$REAL_PG_RESTORE" "$@" | sed "s/ WITH TEMPLATE = template0/ TEMPLATE template0/"\n')
    (wrapper / 'pg_restore').chmod(0o755)
    real = as_pg_user('sh', '-c', 'command -v pg_restore', env=env).stdout.decode().strip()
    other = dict(env, PATH=f'{wrapper}:{env["PATH"]}', REAL_PG_RESTORE=real)
    listed = databases(pg_world)
    for args, names in ((['restore-into', 'database', 'fixture'], {'SELFHOST_BACKUP_INTO': 'unread_copy'}),
                        (['restore', 'database', 'unread'], {})):
        result = as_pg_user(str(script), *args, env=dict(other, **names), stdin=dumps['database fixture'], check=False)
        assert result.returncode == 1, result.stderr.decode()
        assert "cannot read the dump's CREATE DATABASE" in result.stderr.decode()
        assert 'nothing was created' in result.stderr.decode()
        assert databases(pg_world) == listed


def test_postgresql_one_database_fails_before_creating_anything_when_it_cannot_read_the_create_database(pg_world):
    dump = pg_world[2]['cluster']
    assert b'\nCREATE DATABASE fixture ' in dump
    unreadable = dump.replace(b'\nCREATE DATABASE fixture ', b'\nCREATE  DATABASE fixture ')
    listed = databases(pg_world)
    for names in ({'SELFHOST_BACKUP_DATABASE': 'fixture'},
                  {'SELFHOST_BACKUP_DATABASE': 'fixture', 'SELFHOST_BACKUP_INTO': 'unread_copy'}):
        result = helper(pg_world, 'restore-database', 'cluster', dump=unreadable, **names)
        assert result.returncode == 1
        assert 'cannot read the CREATE DATABASE of database fixture in the cluster dump: nothing was created' \
            in result.stderr.decode()
        assert databases(pg_world) == listed


def client_on(pg_world, database: str, seconds: float) -> subprocess.Popen:
    """A client connected to the database for that long (an application's session), once the server lists it."""
    script, env, dumps, world, psql = pg_world
    client = subprocess.Popen([*psql, '-d', database, '-c', f'SELECT pg_sleep({seconds})'], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, **as_nobody(env))
    for dummy in range(100):
        if pg(pg_world, 'postgres', f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'") != '0\n':
            return client
        time.sleep(0.05)
    client.kill()
    raise AssertionError(f'the client on {database} never showed in pg_stat_activity')


def test_postgresql_restore_in_place_waits_a_moment_for_a_session_that_is_ending(pg_world):
    """A client that has just quit can stay listed while its backend exits (CI saw one on a busy machine): the
    restore looks again for a moment instead of refusing at once."""
    dumps = pg_world[2]
    before = pg(pg_world, 'fixture', VALUES)
    pg(pg_world, 'fixture', "INSERT INTO t VALUES (3, 'after the backup')")
    client = client_on(pg_world, 'fixture', 0.5)
    try:
        result = helper(pg_world, 'restore-database', 'cluster', dump=dumps['cluster'], SELFHOST_BACKUP_DATABASE='fixture')
    finally:
        client.wait(timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    assert pg(pg_world, 'fixture', VALUES) == before


def test_postgresql_restore_in_place_still_stops_for_a_session_that_stays(pg_world):
    dumps = pg_world[2]
    pg(pg_world, 'fixture', "INSERT INTO t VALUES (4, 'kept')")
    changed, listed = pg(pg_world, 'fixture', VALUES), databases(pg_world)
    client = client_on(pg_world, 'fixture', 20)
    try:
        result = helper(pg_world, 'restore-database', 'cluster', dump=dumps['cluster'], SELFHOST_BACKUP_DATABASE='fixture')
    finally:
        client.kill()
        client.wait(timeout=30)
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert 'the restore stopped before it changed anything: other sessions use databases it would replace: fixture (pid' \
        in stderr, stderr
    assert 'application psql' in stderr
    assert pg(pg_world, 'fixture', VALUES) == changed
    time.sleep(0.5)
    assert databases(pg_world) == listed
    pg(pg_world, 'fixture', 'DELETE FROM t WHERE id = 4')
