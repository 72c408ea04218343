# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The PostgreSQL and MariaDB restore helpers against fake clients: what they send the server, and what they say
when a restore stops. The contract molecule scenario runs them against real servers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROLES = Path(__file__).resolve().parents[3] / 'roles'

# Records what a restore sends (stream.sql) and answers the helpers' own questions from files in $FAKE.
FAKE_PSQL = r'''#!/bin/bash
case " $* " in
  *" -c "*) echo postgres; exit 0 ;;                                   # quote_ident(current_user)
  *" names="*) [ -s "$FAKE/state" ] && cat "$FAKE/state" && exit 0; exit 2 ;;   # what the restore left
esac
dd status=none of="$FAKE/stream.sql"   # not cat: see no_bare_cat
mode="$(cat "$FAKE/mode" 2>/dev/null)"
if [ "$mode" = partial ]; then
  sed -n "s/^SELECT '\(selfhost-backup: restore started [^']*\)';$/\1/p" "$FAKE/stream.sql"
  echo 'You are now connected to database "template1" as user "postgres".'
  echo 'You are now connected to database "fixture" as user "postgres".'
  echo 'ERROR:  division by zero' >&2
  exit 3
fi
[ "$mode" != early ] || { echo 'ERROR:  selfhost-backup: the restore stopped before it changed anything: ...' >&2; exit 3; }
'''

FAKE_MARIADB = r'''#!/bin/bash
for arg in "$@"; do
  case "$arg" in
    "SHOW OPEN TABLES"*) cat "$FAKE/tables" 2>/dev/null; exit 0 ;;
    "KILL CONNECTION "*) echo "${arg#KILL CONNECTION }" >> "$FAKE/killed"; exit 0 ;;
    *"information_schema.SCHEMATA"*) cat "$FAKE/exists" 2>/dev/null || echo 0; exit 0 ;;   # restore --into
    "DROP DATABASE "*) echo "$arg" >> "$FAKE/dropped"; exit 0 ;;
  esac
done
if [ "$(cat "$FAKE/mode" 2>/dev/null)" = hang ]; then   # a restore --into stopped half way: CREATED, then it waits
  while IFS= read -r line; do
    case "$line" in "SELECT 'selfhost-backup: created "*) line="${line#SELECT \'}"; echo "${line%\';}"; touch "$FAKE/created" ;; esac
  done
  exit 0
fi
input="$(dd status=none)"   # not cat: see no_bare_cat
if [[ "$input" == *PROCESSLIST* ]]; then
  cat "$FAKE/sessions" 2>/dev/null
  exit 0
fi
printf '%s\n' "$input" > "$FAKE/stream.sql"
if [ "$(cat "$FAKE/mode" 2>/dev/null)" = partial ]; then
  hex="$(sed -n "s/^SELECT CONVERT(X'\([0-9a-f]*\)' USING utf8mb4);$/\1/p" "$FAKE/stream.sql")"
  printf "$(sed 's/../\\x&/g' <<<"$hex")\n"
  sed -n "s/^SELECT '\(selfhost-backup: created [^']*\)';$/\1/p" "$FAKE/stream.sql"   # restore --into
  reached="$(sed -n "s/^SELECT CONCAT('\(selfhost-backup: restoring [^']*\) ', DATABASE());$/\1/p" "$FAKE/stream.sql" | head -n 1)"
  printf '%s app\n%s mysql\n' "$reached" "$reached"
  echo "ERROR 1146 (42S02) at line 9: Table 'mysql.nowhere' doesn't exist" >&2
  exit 1
fi
'''

CLUSTER_DUMP = '''--
-- PostgreSQL database cluster dump
--

\\restrict KEY

SET default_transaction_read_only = off;

--
-- Drop databases (except postgres and template1)
--

DROP DATABASE IF EXISTS "it's";
DROP DATABASE IF EXISTS fixture;

DROP ROLE IF EXISTS postgres;
DROP ROLE IF EXISTS app;
CREATE ROLE postgres;
CREATE ROLE app;

SET row_security = off;

UPDATE pg_catalog.pg_database SET datistemplate = false WHERE datname = 'template1';
DROP DATABASE template1;
CREATE DATABASE template1 WITH TEMPLATE = template0;

\\unrestrict KEY
\\connect template1
\\restrict KEY

SET row_security = off;

COPY public.lookalikes (line) FROM stdin;
SET row_security = off;
DROP DATABASE postgres;
\\.

SET row_security = off;

DROP DATABASE postgres;
CREATE DATABASE postgres WITH TEMPLATE = template0;

\\connect postgres

--
-- PostgreSQL database cluster dump complete
--

\\unrestrict KEY
'''

MARIADB_DUMP = '''/*M!999999\\- enable the sandbox mode */
-- MariaDB dump
/*!40101 SET NAMES utf8mb4 */;
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `app`;
USE `app`;
DROP TABLE IF EXISTS `t`;
DELIMITER ;;
CREATE PROCEDURE `p`()
BEGIN
SELECT 1;
USE `inside`;
END ;;
DELIMITER ;
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `mysql`;
USE `mysql`;
-- Dump completed on 2026-12-06
'''


def helper(tmp_path: Path, role: str, fake: str, client: str) -> tuple[Path, dict]:
    """The role's helper, installed as the role does (its file under the host's name, mode 0755) beside the shared
    library, and an environment whose client is the fake."""
    tools, state = tmp_path / 'tools', tmp_path / 'fake'
    tools.mkdir()
    state.mkdir()
    script = tools / f'{role}-databasebackup'
    shutil.copyfile(ROLES / role / 'files' / f'{role}-databasebackup.sh', script)
    script.chmod(0o755)
    shutil.copy(ROLES / 'requester_common' / 'files' / 'databasebackup-lib.sh', tools)
    (tools / client).write_text(fake)
    (tools / client).chmod(0o755)
    return script, dict(os.environ, PATH=f'{tools}:{os.environ["PATH"]}', FAKE=str(state))


def run(script: Path, env: dict, *args: str, dump: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], input=dump, capture_output=True, text=True, env=env, check=False)


@pytest.fixture
def postgresql(tmp_path):
    return helper(tmp_path, 'postgresql', FAKE_PSQL, 'psql')


@pytest.fixture
def mariadb(tmp_path):
    return helper(tmp_path, 'mariadb', FAKE_MARIADB, 'mariadb')


def sent(env: dict) -> list[str]:
    return (Path(env['FAKE']) / 'stream.sql').read_text().splitlines()


def test_cluster_restore_checks_every_dropped_database_before_its_first_change(postgresql):
    script, env = postgresql
    result = run(script, env, 'restore', 'cluster', dump=CLUSTER_DUMP)
    assert result.returncode == 0, result.stderr
    lines = sent(env)
    check = lines.index('DO $selfhost_backup$')
    started = next(i for i, line in enumerate(lines) if line.startswith("SELECT 'selfhost-backup: restore started "))
    first_drop = lines.index('DROP DATABASE IF EXISTS "it\'s";')
    assert lines[:check - 5] == CLUSTER_DUMP.splitlines()[:check - 5]  # the preamble as it was
    # The databases the dump drops, as quoted names (the quote in a name doubled in the SQL string).
    assert "\n".join(lines[check - 5:check]) == (
        "SELECT pg_catalog.set_config('selfhost_backup.databases', '\"it''s\"\nfixture\ntemplate1\npostgres', false) IS NULL;\n"
        "SELECT pg_catalog.set_config('selfhost_backup.terminate', 'off', false) IS NULL;")
    assert check < started < first_drop
    assert not any('WITH (FORCE)' in line for line in lines)
    assert 'DROP ROLE IF EXISTS postgres;' not in lines and 'CREATE ROLE postgres;' not in lines
    assert 'DROP ROLE IF EXISTS app;' in lines
    # Everything after the check as the dump has it, but the restoring user's role statements.
    rest = [line for line in CLUSTER_DUMP.splitlines()
            if line not in ('DROP ROLE IF EXISTS postgres;', 'CREATE ROLE postgres;')]
    assert lines[started + 1:] == rest[rest.index('DROP DATABASE IF EXISTS "it\'s";'):]


def test_cluster_restore_with_terminate_sessions_forces_each_drop_but_never_table_data(postgresql):
    script, env = postgresql
    result = run(script, env, 'restore', '--terminate-sessions', 'cluster', dump=CLUSTER_DUMP)
    assert result.returncode == 0, result.stderr
    lines = sent(env)
    assert "SELECT pg_catalog.set_config('selfhost_backup.terminate', 'on', false) IS NULL;" in lines
    forced = [line for line in lines if line.startswith('DROP DATABASE')]
    assert forced == ['DROP DATABASE IF EXISTS "it\'s" WITH (FORCE);', 'DROP DATABASE IF EXISTS fixture WITH (FORCE);',
                      'DROP DATABASE template1 WITH (FORCE);',
                      'DROP DATABASE postgres;',  # the COPY row that reads like one
                      'DROP DATABASE postgres WITH (FORCE);']
    copy = lines.index('COPY public.lookalikes (line) FROM stdin;')
    assert lines[copy + 1:copy + 4] == ['SET row_security = off;', 'DROP DATABASE postgres;', '\\.']


def test_cluster_dump_cut_in_its_roles_section_is_never_replayed(postgresql):
    script, env = postgresql
    cut = CLUSTER_DUMP[:CLUSTER_DUMP.index('CREATE ROLE app;')]
    result = run(script, env, 'restore', 'cluster', dump=cut)
    assert result.returncode != 0
    assert sent(env) == []
    assert 'the dump is incomplete' in result.stderr
    assert 'the restore stopped before it changed anything' in result.stderr
    assert 'partially restored' not in result.stderr


def test_cluster_restore_stopped_by_the_check_says_nothing_changed(postgresql):
    script, env = postgresql
    (Path(env['FAKE']) / 'mode').write_text('early')
    result = run(script, env, 'restore', 'cluster', dump=CLUSTER_DUMP)
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == (
        'postgresql-databasebackup: the restore stopped before it changed anything (the error is above)')


def test_cluster_restore_failing_after_it_started_says_partially_restored(postgresql):
    script, env = postgresql
    (Path(env['FAKE']) / 'mode').write_text('partial')
    (Path(env['FAKE']) / 'state').write_text(
        'missing now: it\'s; present (restored, half restored or not reached): fixture, postgres, template1\n')
    result = run(script, env, 'restore', 'cluster', dump=CLUSTER_DUMP)
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == (
        'postgresql-databasebackup: partially restored: the restore failed while restoring database fixture (the '
        'error is above), after it had started dropping the databases of the dump; missing now: it\'s; present '
        '(restored, half restored or not reached): fixture, postgres, template1. Restore again (restore latest, or '
        'the snapshot you meant) before the cluster is used.')


def test_mariadb_restore_stops_for_other_sessions_before_any_change(mariadb):
    script, env = mariadb
    (Path(env['FAKE']) / 'sessions').write_text(
        '12\tapp (id 12, user web@localhost, Sleep, in a transaction since 2026-12-06 10:00:00)\n'
        '13\t(no database) (id 13, user cron@localhost, Query, in a transaction since 2026-12-06 10:01:00)\n')
    result = run(script, env, 'restore', dump=MARIADB_DUMP)
    assert result.returncode != 0
    assert not (Path(env['FAKE']) / 'stream.sql').exists()
    assert ('the restore stopped before it changed anything: other sessions use databases it would replace: app '
            '(id 12, user web@localhost, Sleep, in a transaction since 2026-12-06 10:00:00); (no database) (id 13, '
            'user cron@localhost, Query, in a transaction since 2026-12-06 10:01:00). Stop the applications') \
        in result.stderr


def test_mariadb_restore_stops_for_tables_in_use_by_a_session_it_cannot_name(mariadb):
    script, env = mariadb
    (Path(env['FAKE']) / 'tables').write_text('app\tt\t1\t0\n')
    result = run(script, env, '--compression', 'none', 'restore', '--terminate-sessions', '--databases', 'app',
                 dump=MARIADB_DUMP)
    assert result.returncode != 0
    assert not (Path(env['FAKE']) / 'stream.sql').exists()
    assert 'tables it would replace are in use by a session it cannot name (LOCK TABLES, or a statement running ' \
           'now, from outside these databases): app.t.' in result.stderr


def test_mariadb_restore_with_terminate_sessions_ends_them_and_bounds_lock_waits(mariadb):
    script, env = mariadb
    (Path(env['FAKE']) / 'sessions').write_text('12\tapp (id 12, user web@localhost, Sleep)\n')
    result = run(script, env, 'restore', '--terminate-sessions', '--lock-wait-timeout', '7', dump=MARIADB_DUMP)
    assert result.returncode == 0, result.stderr
    assert (Path(env['FAKE']) / 'killed').read_text() == '12\n'
    assert 'ending the other sessions on databases the restore replaces: app (id 12, user web@localhost, Sleep)' \
        in result.stderr
    lines = sent(env)
    assert lines[0] == 'SET SESSION lock_wait_timeout = 7;'
    assert re.fullmatch(r"SELECT CONVERT\(X'[0-9a-f]+' USING utf8mb4\);", lines[1])
    # After each USE of the dump, not the one inside the procedure's body.
    marks = [lines[i - 1] for i, line in enumerate(lines) if line.startswith("SELECT CONCAT('selfhost-backup: restoring ")]
    assert marks == ['USE `app`;', 'USE `mysql`;']
    assert [line for line in lines[2:] if not line.startswith('SELECT CONCAT(')] == MARIADB_DUMP.splitlines()


def test_mariadb_restore_failing_after_it_started_says_partially_restored(mariadb):
    script, env = mariadb
    (Path(env['FAKE']) / 'mode').write_text('partial')
    result = run(script, env, 'restore', dump=MARIADB_DUMP)
    assert result.returncode != 0
    assert "ERROR 1146 (42S02) at line 9: Table 'mysql.nowhere' doesn't exist" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        'mariadb-databasebackup: partially restored: the restore failed while restoring database mysql (the error '
        'is above); databases restored before it: app; the ones after it in the dump are as they were. Restore '
        'again (restore latest, or the snapshot you meant) before the server is used.')


@pytest.mark.parametrize('args', [['restore', '--lock-wait-timeout', '0'], ['restore', '--lock-wait-timeout'],
                                  ['restore', '--databases'], ['restore', 'extra']])
def test_mariadb_restore_rejects_bad_options(mariadb, args):
    script, env = mariadb
    result = run(script, env, *args, dump=MARIADB_DUMP)
    assert result.returncode == 2
    assert result.stderr.startswith('usage:')
    assert not (Path(env['FAKE']) / 'stream.sql').exists()


# A cluster dump whose last database holds more table data than the tail the helper checks (1 MiB), with rows that
# read like the dump's own end: `\\connect` escaped as COPY writes it, and the closing comment.
BIG_ROWS = ''.join(f'{i}\trow {i} {"x" * 60}\n' for i in range(20000))
LOOKALIKE_ROWS = '--\n-- PostgreSQL database cluster dump complete\n--\n'
BIG_DUMP = CLUSTER_DUMP.replace(
    '\\connect postgres\n',
    '\\connect postgres\n\nCOPY public.big (id, v) FROM stdin;\n' + BIG_ROWS + LOOKALIKE_ROWS + BIG_ROWS
    + '\\\\connect evil\n' + BIG_ROWS + '\\.\n\n')


def assert_passed_through(env: dict, dump: str) -> None:
    """What psql got after the checks is the cluster dump from its first DROP DATABASE on, line for line."""
    lines = sent(env)
    started = next(i for i, line in enumerate(lines) if line.startswith("SELECT 'selfhost-backup: restore started "))
    rest = [line for line in dump.splitlines() if line not in ('DROP ROLE IF EXISTS postgres;', 'CREATE ROLE postgres;')]
    assert lines[started + 1:] == rest[rest.index('DROP DATABASE IF EXISTS "it\'s";'):]


def test_cluster_restore_passes_a_large_dump_through_unchanged_and_checks_its_tail(postgresql):
    script, env = postgresql
    assert len(BIG_DUMP) > 3 * 1048576
    result = run(script, env, 'restore', 'cluster', dump=BIG_DUMP)
    assert result.returncode == 0, result.stderr
    assert_passed_through(env, BIG_DUMP)


def cut_dump(cut: str) -> str:
    lookalike_end = BIG_DUMP.index(LOOKALIKE_ROWS) + len(LOOKALIKE_ROWS)
    if cut == 'escaped':
        # The checked tail starts at the second backslash of the row: read alone, it would look like \connect.
        row = '\\\\connect evil\n'
        before = BIG_DUMP[:BIG_DUMP.index(row)] + row
        filler = BIG_ROWS[:1048576 - (len(row) - 1) - len(LOOKALIKE_ROWS)]
        dump = before + filler + LOOKALIKE_ROWS
        assert dump[len(dump) - 1048576:].startswith('\\connect evil\n')
        return dump
    return BIG_DUMP[:{
        'lookalike': lookalike_end,
        'data': len(BIG_DUMP) // 2,
        'after_connect': BIG_DUMP.index('\\connect postgres\n') + len('\\connect postgres\n'),
        'before_end': BIG_DUMP.index('-- PostgreSQL database cluster dump complete', lookalike_end) + 20,
    }[cut]]


@pytest.mark.parametrize('cut', [
    'lookalike',      # right after table rows that read like the dump's end, far from any line outside table data
    'escaped',        # the checked tail starts inside a row `\\connect evil` (COPY's escape), at its second backslash
    'data',           # in the middle of the table data
    'after_connect',  # right after the last \connect
    'before_end',     # in the closing comment
])
def test_cluster_restore_of_a_large_dump_cut_anywhere_fails(postgresql, cut):
    script, env = postgresql
    result = run(script, env, 'restore', 'cluster', dump=cut_dump(cut))
    assert result.returncode != 0, cut
    assert 'the dump is incomplete' in result.stderr, result.stderr


def no_bare_cat(env: dict) -> None:
    """A cat on PATH that fails when it reads its stdin (no file operand): a plain dump copied through cat (the
    helpers' decompression of compression none before) fails the restore. cat with files still works."""
    real = shutil.which('cat', path=env['PATH'])
    shim = Path(env['PATH'].split(':', 1)[0]) / 'cat'
    shim.write_text(f'''#!/bin/bash
for arg in "$@"; do [ "$arg" = - ] || [[ "$arg" == -* ]] || exec {real} "$@"; done
echo "cat shim: a cat on stdin in the restore's pipeline" >&2
exit 1
''')
    shim.chmod(0o755)


@pytest.mark.parametrize('args', [['restore', 'cluster'], ['--compression', 'none', 'restore', 'cluster'],
                                  ['restore', 'globals']])
def test_postgresql_restore_of_a_plain_dump_reads_stdin_without_a_cat_in_between(postgresql, args):
    script, env = postgresql
    no_bare_cat(env)
    result = run(script, env, *args, dump=BIG_DUMP)
    assert result.returncode == 0, result.stderr
    assert 'cat shim' not in result.stderr
    if 'cluster' in args:
        assert_passed_through(env, BIG_DUMP)


def test_mariadb_restore_of_a_plain_dump_reads_stdin_without_a_cat_in_between(mariadb):
    script, env = mariadb
    no_bare_cat(env)
    result = run(script, env, 'restore', dump=MARIADB_DUMP)
    assert result.returncode == 0, result.stderr
    assert [line for line in sent(env)[2:] if not line.startswith('SELECT CONCAT(')] == MARIADB_DUMP.splitlines()


def test_postgresql_restore_of_a_gzip_dump_still_decompresses_it(postgresql):
    script, env = postgresql
    no_bare_cat(env)
    dump = subprocess.run(['gzip', '-c'], input=BIG_DUMP.encode(), capture_output=True, check=True).stdout
    result = subprocess.run([str(script), '--compression', 'gzip', 'restore', 'cluster'], input=dump,
                            capture_output=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert_passed_through(env, BIG_DUMP)


def test_cluster_restore_from_a_regular_file_reads_it_whole_and_checks_its_tail(postgresql, tmp_path):
    """stdin a file, not a pipe (restore cluster < dump.sql): the head's filter must leave the rest at its offset."""
    script, env = postgresql
    for dump, ok in ((BIG_DUMP, True), (cut_dump('data'), False)):
        path = tmp_path / 'dump.sql'
        path.write_text(dump)
        with path.open() as stdin:
            result = subprocess.run([str(script), 'restore', 'cluster'], stdin=stdin, capture_output=True, text=True,
                                    env=env, check=False)
        assert (result.returncode == 0) == ok, result.stderr
        if ok:
            assert_passed_through(env, dump)
        else:
            assert 'the dump is incomplete' in result.stderr
