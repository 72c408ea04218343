# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The job script's data (the restore script on PATH) and the static program it sources."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from job_library import job_data, make_library

from ansible_collections.selfhost.backup.plugins.module_utils import _job_script, _layout

LAYOUT = _layout.Layout('borg', 'app')


def spec(**changes):
    values = dict(
        layout=LAYOUT, user='postgres', backup_name='db.sql', backup_cmd='pg_dumpall', restore_cmd='psql',
        credentials={'passphrase': '/etc/selfhost-backup/borg/app/passphrase'}, env_names=(), stop_units=(),
        provider_data=(),
    )
    values.update(changes)
    return _job_script.ScriptSpec(**values)


UGLY = ("printf '%s' \"$HOME\" `id`; echo 100% \\ done", "it's \"quoted\"\n\ttwo lines $(true) ${x} é", '', '-n', '*')

# A provider half that defines the interface and shows what it was given.
STAND_IN = """provider_snapshots() { printf '%s\\n' "${STAND_IN_LIST[@]}"; }
provider_snapshots_json() { :; }
provider_exec() { :; }
readonly EXEC_EXAMPLE=info
provider_has_snapshot() { :; }
provider_dump() { :; }
provider_dump_size() { :; }
provider_resolve() { printf '%s\n' "$1"; }
provider_newest_json() { :; }
provider_snapshot_count() { :; }
provider_retention() { :; }
provider_backup() { :; }
"""


def test_the_data_file_holds_every_value_verbatim_and_nothing_else():
    script = _job_script.render_script(spec(
        backup_cmd=UGLY[0], restore_cmd=UGLY[1], stop_units=('a.service', 'b b.service'), env_names=('AWS_KEY',),
        notes=UGLY, provider_data=(('STAND_IN_LIST', list(UGLY)), ('STAND_IN_TEXT', UGLY[1]))))
    assert script.startswith('#!/bin/bash\n') and script.endswith('source "$LIBRARY/job.sh"\n')
    # Assignments only: without its last line, the file runs no command (no PATH, no output, no error).
    bare = subprocess.run([shutil.which('bash'), '-euc', script.removesuffix('source "$LIBRARY/job.sh"\n')], env={'PATH': ''},
                          capture_output=True, text=True, check=False)
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, '', '')
    data = job_data(script)
    assert data['BACKUP_CMD'] == UGLY[0] and data['RESTORE_CMD'] == UGLY[1]
    assert data['STOP_UNITS'] == ['a.service', 'b b.service'] and data['ENV_SECRETS'] == ['AWS_KEY']
    assert data['SECRET_FILES'] == {'passphrase': '/etc/selfhost-backup/borg/app/passphrase'}
    assert data['NOTES'] == list(UGLY) and data['STAND_IN_LIST'] == list(UGLY) and data['STAND_IN_TEXT'] == UGLY[1]
    assert data['LIBRARY'] == '/usr/local/lib/selfhost-backup' and data['MAINTENANCE'] == ['backup']
    assert list(data)[:len(_job_script.JOB_DATA)] == list(_job_script.JOB_DATA)


def test_the_script_runs_the_static_program_with_its_data(tmp_path):
    library = make_library({'borg.sh': STAND_IN})
    try:
        path = tmp_path / 'script'
        path.write_text(_job_script.render_script(spec(
            stop_units=('a.service', 'b.service'), notes=('a note',), library=library,
            provider_data=(('STAND_IN_LIST', list(UGLY)),))))
        helped = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert helped.returncode == 0, helped.stderr
        assert 'borg-restore-app restore latest' in helped.stdout and 'restore one archive' not in helped.stdout
        assert 'a note' in helped.stdout and 'stops a.service, b.service' in helped.stdout
        assert subprocess.run(['bash', str(path), 'nonsense'], capture_output=True, check=False).returncode == 2
        listed = subprocess.run(['bash', str(path), 'snapshots'], capture_output=True, text=True, check=False,
                                env={'PATH': os.environ['PATH'], 'CREDENTIALS_DIRECTORY': str(tmp_path)})
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == ''.join(f'{value}\n' for value in UGLY)
    finally:
        shutil.rmtree(library)


@pytest.mark.parametrize('missing', ['provider_dump', 'provider_backup', 'provider_exec', 'provider_snapshots_json'])
def test_a_provider_half_without_a_function_of_the_interface_fails_at_once(tmp_path, missing):
    library = make_library({'borg.sh': STAND_IN.replace(f'{missing}()', 'something_else()')})
    try:
        path = tmp_path / 'script'
        path.write_text(_job_script.render_script(spec(library=library)))
        result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert result.returncode == 1 and f'borg.sh does not define {missing}' in result.stderr
    finally:
        shutil.rmtree(library)


def test_a_provider_half_without_its_exec_example_fails_at_once(tmp_path):
    library = make_library({'borg.sh': STAND_IN.replace('readonly EXEC_EXAMPLE=info', '')})
    try:
        path = tmp_path / 'script'
        path.write_text(_job_script.render_script(spec(library=library)))
        result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert result.returncode == 1 and 'borg.sh does not set EXEC_EXAMPLE' in result.stderr
    finally:
        shutil.rmtree(library)


def test_a_data_file_without_a_variable_of_job_sh_fails_at_once(tmp_path):
    library = make_library({'borg.sh': STAND_IN})
    try:
        script = _job_script.render_script(spec(library=library))
        path = tmp_path / 'script'
        path.write_text('\n'.join(line for line in script.splitlines() if not line.startswith('readonly RESTORE_CMD=')))
        result = subprocess.run(['bash', str(path), '--help'], capture_output=True, text=True, check=False)
        assert result.returncode == 1 and 'the job data does not define RESTORE_CMD' in result.stderr
    finally:
        shutil.rmtree(library)


@pytest.mark.parametrize('name', ['restore', 'Bad', 'a b'])
def test_render_script_refuses_bad_maintenance_names(name):
    with pytest.raises(_layout.ProviderError):
        _job_script.render_script(spec(maintenance=('backup', name)))


# A provider half whose every function says that it ran: a usage error must stop before any of them.
CALLED = STAND_IN.replace('{ :; }', '{ echo "called $FUNCNAME" >&2; }')


@pytest.fixture(scope='module')
def called_library():
    library = make_library({'borg.sh': CALLED})
    yield library
    shutil.rmtree(library)


@pytest.mark.parametrize('args, message', [
    ([], 'missing the subcommand (snapshots, restore, dump, drill, exec or help)'),
    (['frobnicate'], "unknown subcommand 'frobnicate'"),
    (['--frobnicate'], "unknown option '--frobnicate'"),
    (['snapshot'], "unknown subcommand 'snapshot'"),
    (['snapshots', '--jsn'], "snapshots: unknown option '--jsn'"),
    (['snapshots', 'all'], "snapshots: extra argument 'all'"),
    (['snapshots', '--json', 'all'], "snapshots --json: extra argument 'all'"),
    (['restore'], "restore: missing the snapshot (latest, or one listed by 'borg-restore-app snapshots')"),
    (['restore', '--force', 'latest'], "restore: unknown option '--force'"),
    (['restore', 'latest', 'now'], "restore: extra argument 'now'"),
    (['dump'], "dump: missing the snapshot (latest, or one listed by 'borg-restore-app snapshots')"),
    (['dump', '-o', 'x'], "dump: unknown option '-o'"),
    (['dump', 'latest', "it's $x"], "dump: extra argument 'it's $x'"),
    (['drill'], "drill: missing the snapshot (latest, or one listed by 'borg-restore-app snapshots')"),
    (['drill', '--now', 'latest'], "drill: unknown option '--now'"),
    (['drill', 'latest', 'again'], "drill: extra argument 'again'"),
    (['drill-finished', 'now'], "drill-finished: extra argument 'now'"),
    (['exec'], "exec: missing '--' and the borg arguments (e.g. borg-restore-app exec -- info)"),
    (['exec', 'info'], "exec: expected '--' before the borg arguments, got 'info' (e.g. borg-restore-app exec -- info)"),
    (['exec', '--'], "exec: missing the borg arguments after '--' (e.g. borg-restore-app exec -- info)"),
    (['help', 'restore'], "help: extra argument 'restore'"),
    (['newest', '--all'], "newest: unknown option '--all'"),
    (['frobnicate', '--help'], "unknown subcommand 'frobnicate'"),
    (['notify', '--help'], "notify: unknown option '--help'"),
    (['backup', 'now'], "backup: extra argument 'now'"),
])
def test_a_usage_error_names_the_bad_argument_and_exits_2(tmp_path, called_library, args, message):
    path = tmp_path / 'script'
    path.write_text(_job_script.render_script(spec(library=called_library)))
    result = subprocess.run(['bash', str(path), *args], capture_output=True, text=True, check=False,
                            env={'PATH': os.environ['PATH'], 'CREDENTIALS_DIRECTORY': str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"borg-restore-app: {message}\nRun 'borg-restore-app --help' for the subcommands and examples.\n"
    assert result.stdout == ''


@pytest.mark.parametrize('args', [['--help'], ['-h'], ['help'], ['restore', '--help'], ['dump', '-h'],
                                  ['exec', '--help'], ['snapshots', '--help'], ['drill', '--help']])
def test_help_lists_every_subcommand_with_an_example(tmp_path, called_library, args):
    path = tmp_path / 'script'
    path.write_text(_job_script.render_script(spec(library=called_library)))
    result = subprocess.run(['bash', str(path), *args], capture_output=True, text=True, check=False,
                            env={'PATH': os.environ['PATH']})
    assert result.returncode == 0 and result.stderr == ''
    for usage, example in (('snapshots [--json]', 'snapshots --json'), ('restore <latest|snapshot>', 'restore latest'),
                           ('dump <latest|snapshot>', 'dump latest > db.sql'), ('drill <latest|snapshot>', 'drill latest'),
                           ('exec -- <borg arguments>', 'exec -- info')):
        assert f'\n  {usage} ' in result.stdout
        assert f'e.g. borg-restore-app {example}\n' in result.stdout
    assert '\n  help, --help ' in result.stdout


@pytest.mark.parametrize('args, function', [(['exec', '--', '--help'], 'provider_exec'),
                                            (['snapshots', '--json'], 'provider_snapshots_json')])
def test_the_tool_s_own_arguments_reach_the_provider(tmp_path, called_library, args, function):
    path = tmp_path / 'script'
    path.write_text(_job_script.render_script(spec(library=called_library)))
    result = subprocess.run(['bash', str(path), *args], capture_output=True, text=True, check=False,
                            env={'PATH': os.environ['PATH'], 'CREDENTIALS_DIRECTORY': str(tmp_path)})
    assert result.returncode == 0 and result.stderr == f'called {function}\n'


@pytest.mark.parametrize('name', ['dump', 'exec', 'snapshots', 'restore', 'drill'])
def test_a_maintenance_step_cannot_take_an_operator_command_s_name(name):
    with pytest.raises(_layout.ProviderError, match='not a plain name of its own'):
        _job_script.render_script(spec(maintenance=('backup', name)))
