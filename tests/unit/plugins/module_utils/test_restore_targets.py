# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""restore --into and --database of the job script (the request's restore_into_cmd and restore_database_cmd), and
the progress of restore and dump on a terminal, run by bash against the fake restic and borg of the provider
script tests. The requesters' side of --into and --database is in tests/unit/roles/test_restore_into.py."""

from __future__ import annotations

import os
import pty
import subprocess

import pytest
import test_borg_script as borg_tests
import test_restic_script as restic_tests
from ansible_collections.selfhost.backup.plugins.module_utils import _job_script, _layout
from job_library import make_world, needs_root

# What each command records: the names it found in its environment (unset: "-"), and the dump it read.
RECORD = ('printf "into=%s database=%s\\n" "${{SELFHOST_BACKUP_INTO--}}" "${{SELFHOST_BACKUP_DATABASE--}}" '
          '> {world}/{name}.env; cat > {world}/{name}.data')


class Provider:
    """One provider's world and script, as its script tests make them."""

    def __init__(self, name, world):
        self.name, self.world = name, world

    def script(self, **spec):
        spec.setdefault('restore_cmd', RECORD.format(world=self.world, name='restore'))
        if self.name == 'restic':
            return restic_tests.script(self.world, (0, 18, 0), **spec)
        return borg_tests.script(self.world, **spec)

    def run(self, path, *args, **env):
        module = restic_tests if self.name == 'restic' else borg_tests
        return module.run(self.world, path, *args, **env)

    def tool_calls(self):
        log = self.world / 'store' / 'log'
        return log.read_text().count('\n') if log.exists() else 0


@pytest.fixture(params=['restic', 'borg'])
def provider(request, tmp_path, job_library):
    if request.param == 'restic':
        make_world(tmp_path, job_library, 'restic', restic_tests.FAKE_RESTIC,
                   {'passphrase': 'pw-secret', 'env.RESTIC_REPOSITORY': '/srv/repo'})
        (tmp_path / 'cache').mkdir()
    else:
        make_world(tmp_path, job_library, 'borg', borg_tests.FAKE_BORG,
                   {'passphrase': 'pw-secret', 'ssh_key': 'KEY', 'known_hosts': 'h ssh-ed25519 AAAA\n'})
    return Provider(request.param, tmp_path)


def backed_up(provider, **spec):
    spec.setdefault('restore_into_cmd', RECORD.format(world=provider.world, name='into'))
    path = provider.script(**spec)
    result = provider.run(path, 'backup')
    assert result.returncode == 0, result.stderr
    return path


def env_of(provider, name):
    return (provider.world / f'{name}.env').read_text()


@needs_root
def test_restore_into_streams_the_dump_into_restore_into_cmd_with_the_name_in_its_environment(provider):
    path = backed_up(provider, stop_units=('running.service',))
    result = provider.run(path, 'restore', 'latest', '--into', 'shop_copy', unit=False,
                          PATH=restic_tests.fake_systemctl(provider.world), SELFHOST_BACKUP_DATABASE='inherited')
    assert result.returncode == 0, result.stderr
    assert env_of(provider, 'into') == 'into=shop_copy database=-\n'
    assert (provider.world / 'into.data').read_text() == 'dump-data'
    assert not (provider.world / 'restore.env').exists()
    # The original is untouched: its applications go on running.
    assert restic_tests.systemctl_calls(provider.world) == []
    assert 'restored latest of instance app into shop_copy' in result.stderr


@needs_root
@pytest.mark.parametrize('args, message', [
    (['--into', "shop'; DROP DATABASE shop; --"], "--into 'shop'; DROP DATABASE shop; --' is not a name it takes"),
    (['--into', 'copy$(touch /tmp/owned)'], "--into 'copy$(touch /tmp/owned)' is not a name it takes"),
    (['--into', 'a`id`'], "--into 'a`id`' is not a name it takes"),
    (['--into', '-x'], "--into '-x' is not a name it takes"),
    (['--into', '/srv/../etc/passwd'], "--into '/srv/../etc/passwd' is not a name it takes"),
    (['--into', 'a' * 64], 'is not a name it takes'),
    (['--into'], 'restore: --into needs a name'),
    (['--into', ''], 'restore: --into needs a name'),
    (['--into', 'a', '--into', 'b'], 'restore: --into given twice'),
    (['--database', 'x"y'], "--database 'x\"y' is not a database name it takes"),
    (['--database', 'a', '--database', 'b'], 'restore: --database given twice'),
    (['--in', 'a'], "restore: unknown option '--in'"),
    (['another'], "restore: extra argument 'another'"),
])
def test_restore_refuses_a_bad_target_before_anything_runs(provider, args, message):
    path = backed_up(provider, restore_database_cmd=RECORD.format(world=provider.world, name='database'))
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', *args, unit=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert provider.tool_calls() == before
    assert not any((provider.world / f'{name}.env').exists() for name in ('into', 'database', 'restore'))


@needs_root
def test_restore_into_without_restore_into_cmd_is_refused_naming_why(provider):
    path = backed_up(provider, restore_into_cmd='')
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', '--into', 'copy', unit=False)
    assert result.returncode == 1
    assert ('restore --into: the request of instance app has no restore_into_cmd: its requester cannot restore into '
            'another target') in result.stderr
    assert provider.tool_calls() == before


@needs_root
def test_restore_database_without_restore_database_cmd_is_refused_naming_why(provider):
    path = backed_up(provider)
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', '--database', 'shop', unit=False)
    assert result.returncode == 1
    assert 'restore --database: the request of instance app has no restore_database_cmd' in result.stderr
    assert provider.tool_calls() == before


@needs_root
@pytest.mark.parametrize('args, env, stopped', [
    (['--database', 'shop', '--into', 'shop_copy'], 'into=shop_copy database=shop\n', False),
    (['--into', 'shop_copy', '--database', 'shop'], 'into=shop_copy database=shop\n', False),
    (['--database', 'shop'], 'into=- database=shop\n', True),
])
def test_restore_database_streams_the_dump_into_restore_database_cmd(provider, args, env, stopped):
    path = backed_up(provider, restore_into_cmd='', stop_units=('running.service',),
                     restore_database_cmd=RECORD.format(world=provider.world, name='database'))
    result = provider.run(path, 'restore', 'latest', *args, unit=False, PATH=restic_tests.fake_systemctl(provider.world),
                          SELFHOST_BACKUP_INTO='inherited')
    assert result.returncode == 0, result.stderr
    assert env_of(provider, 'database') == env
    assert (provider.world / 'database.data').read_text() == 'dump-data'
    # In place of a live database the applications stop as for any restore; into a new one nothing stops.
    assert ('stop -- running.service' in restic_tests.systemctl_calls(provider.world)) is stopped


@needs_root
def test_a_failing_restore_into_cmd_fails_the_restore(provider):
    path = backed_up(provider, restore_into_cmd='cat >/dev/null; echo "target exists" >&2; exit 1')
    result = provider.run(path, 'restore', 'latest', '--into', 'copy', unit=False)
    assert result.returncode != 0
    assert 'target exists' in result.stderr and 'restored latest' not in result.stderr


# The check before the repository is opened (a request with restore_checks_names): the request's command runs once
# with SELFHOST_BACKUP_CHECK=1 and no input; a refusal there ends the restore before the tool is run at all (no lock,
# no listing, no secret read).
REFUSE_ON_CHECK = ('if [ "$SELFHOST_BACKUP_CHECK" = 1 ]; then echo "restore --into $SELFHOST_BACKUP_INTO: a system '
                   'database is never restored alone" >&2; exit 1; fi; cat > {world}/{name}.data')
# What the check saw: its names, its input, and how many tool calls had been made by then.
RECORD_CHECK = ('if [ "$SELFHOST_BACKUP_CHECK" = 1 ]; then printf "into=%s database=%s input=%s calls=%s\\n" '
                '"${{SELFHOST_BACKUP_INTO--}}" "${{SELFHOST_BACKUP_DATABASE--}}" "$(cat | wc -c)" '
                '"$(cat {world}/store/log 2>/dev/null | wc -l)" >> {world}/{name}.check; exit 0; fi; '
                'printf "check=%s\\n" "${{SELFHOST_BACKUP_CHECK-unset}}" > {world}/{name}.env; cat > {world}/{name}.data')


@needs_root
@pytest.mark.parametrize('args, key', [
    (['--into', 'template1'], 'restore_into_cmd'),
    (['--database', 'shop', '--into', 'template1'], 'restore_database_cmd'),
    (['--database', 'shop'], 'restore_database_cmd'),
])
def test_a_target_the_requests_command_refuses_is_refused_before_the_tool_runs(provider, args, key):
    path = backed_up(provider, **{key: REFUSE_ON_CHECK.format(world=provider.world, name='target')},
                     restore_checks_names=True)
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', *args, unit=False)
    assert result.returncode == 1
    assert 'a system database is never restored alone' in result.stderr
    assert ("refused by the request's restore command (the reason is above), before the repository was opened: "
            'nothing was read, stopped or restored') in result.stderr
    assert provider.tool_calls() == before
    assert not (provider.world / 'target.data').exists()


@needs_root
@pytest.mark.parametrize('args, key, seen', [
    (['--into', 'copy'], 'restore_into_cmd', 'into=copy database=-'),
    (['--database', 'shop'], 'restore_database_cmd', 'into=- database=shop'),
    (['--into', 'copy', '--database', 'shop'], 'restore_database_cmd', 'into=copy database=shop'),
])
def test_the_check_runs_first_without_input_then_the_restore_without_the_check_flag(provider, args, key, seen):
    path = backed_up(provider, **{key: RECORD_CHECK.format(world=provider.world, name='target')},
                     restore_checks_names=True)
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', *args, unit=False, PATH=restic_tests.fake_systemctl(provider.world),
                          SELFHOST_BACKUP_CHECK='1')
    assert result.returncode == 0, result.stderr
    # Once, with no input, before any tool call; the restore itself never sees the flag (an inherited one neither).
    assert (provider.world / 'target.check').read_text() == f'{seen} input=0 calls={before}\n', result.stderr
    assert (provider.world / 'target.env').read_text() == 'check=unset\n'
    assert (provider.world / 'target.data').read_text() == 'dump-data'
    assert provider.tool_calls() > before


# A command written to the earlier contract, which does not know SELFHOST_BACKUP_CHECK: each run restores for real.
# It records every run: the flag it saw, its input, and how many tool calls had been made by then.
UNAWARE = ('printf "check=%s input=%s calls=%s\\n" "${{SELFHOST_BACKUP_CHECK-unset}}" "$(cat | wc -c)" '
           '"$(cat {world}/store/log 2>/dev/null | wc -l)" >> {world}/{name}.runs')


@needs_root
@pytest.mark.parametrize('args, key', [
    (['--into', 'copy'], 'restore_into_cmd'),
    (['--database', 'shop'], 'restore_database_cmd'),
    (['--into', 'copy', '--database', 'shop'], 'restore_database_cmd'),
])
def test_without_restore_checks_names_the_command_runs_only_at_the_restore(provider, args, key):
    path = backed_up(provider, **{key: UNAWARE.format(world=provider.world, name='target')})
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', *args, unit=False, PATH=restic_tests.fake_systemctl(provider.world),
                          SELFHOST_BACKUP_CHECK='1')
    assert result.returncode == 0, result.stderr
    # Once, after the repository was opened, with the dump: never with no input before the tool ran.
    runs = (provider.world / 'target.runs').read_text().splitlines()
    assert len(runs) == 1, runs
    check, length, calls = runs[0].split()
    assert (check, length) == ('check=unset', f'input={len("dump-data")}')
    assert int(calls.removeprefix('calls=')) > before


@needs_root
def test_with_restore_checks_names_the_check_runs_before_the_repository_is_opened(provider):
    path = backed_up(provider, restore_into_cmd=UNAWARE.format(world=provider.world, name='target'),
                     restore_checks_names=True)
    before = provider.tool_calls()
    result = provider.run(path, 'restore', 'latest', '--into', 'copy', unit=False)
    assert result.returncode == 0, result.stderr
    assert (provider.world / 'target.runs').read_text().splitlines() == [
        f'check=1 input=0 calls={before}', f'check=unset input={len("dump-data")} calls={provider.tool_calls()}']


@pytest.mark.parametrize('request_keys, data', [
    ({}, 0),
    ({'restore_checks_names': False}, 0),
    ({'restore_checks_names': True}, 1),
])
def test_restore_checks_names_reaches_the_job_data(request_keys, data):
    request = {'user': 'postgres', 'backup_name': 'db.sql', 'backup_cmd': 'dump', 'restore_cmd': 'restore',
               'restore_into_cmd': 'into', **request_keys}
    settings = {'lock_wait': 300, 'restore': {'stop_units': []},
                'monitoring': {'late_after': 0, 'ping_timeout': 10, 'ping_retries': 0}}
    spec = _job_script.instance_spec(_layout.Layout('restic', 'app'), request, settings, {}, (), env_names=())
    assert spec.restore_checks_names is bool(data)
    assert ('RESTORE_CHECKS_NAMES', data) in _job_script.script_data(spec)
    assert f'RESTORE_CHECKS_NAMES={data}' in _job_script.render_script(spec)


@needs_root
def test_a_plain_restore_runs_no_check(provider):
    path = backed_up(provider, restore_cmd=RECORD_CHECK.format(world=provider.world, name='target'))
    result = provider.run(path, 'restore', 'latest', unit=False, PATH=restic_tests.fake_systemctl(provider.world))
    assert result.returncode == 0, result.stderr
    assert not (provider.world / 'target.check').exists()
    assert (provider.world / 'target.data').read_text() == 'dump-data'


def on_a_terminal(provider, path, *args, **env):
    """The script by hand with stderr on a pty, stdout to a file: the result and what the terminal showed."""
    controller, terminal = pty.openpty()
    shown = b''
    try:
        with open(provider.world / 'stdout', 'wb') as stdout:
            process = subprocess.Popen(
                ['bash', str(path), *args], stdout=stdout, stderr=terminal, stdin=subprocess.DEVNULL,
                env={'PATH': os.environ['PATH'], 'FAKE_STORE': str(provider.world / 'store'), 'BORG_EXIT_CODES': 'modern',
                     'CACHE_DIRECTORY': str(provider.world / 'hand-cache'), **env})
            os.close(terminal)
            terminal = -1
            while True:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the last holder of the terminal has closed it
                    break
                if not chunk:
                    break
                shown += chunk
            process.wait(timeout=60)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    return process.returncode, shown.decode(errors='replace')


@needs_root
@pytest.mark.parametrize('args', [['dump', 'latest'], ['restore', 'latest'], ['restore', 'latest', '--into', 'copy']])
def test_restore_and_dump_show_progress_on_a_terminal(provider, args):
    path = backed_up(provider)
    rc, shown = on_a_terminal(provider, path, *args)
    assert rc == 0, shown
    # dd's progress: the bytes so far, the elapsed time and the rate, and the totals at the end.
    assert '9 bytes copied' in shown and ' s, ' in shown and 'B/s' in shown
    if args[0] == 'dump':
        assert (provider.world / 'stdout').read_text() == 'dump-data'


@needs_root
@pytest.mark.parametrize('args', [['dump', 'latest'], ['restore', 'latest']])
def test_no_progress_on_a_pipe(provider, args):
    path = backed_up(provider)
    result = provider.run(path, *args, unit=False)
    assert result.returncode == 0, result.stderr
    assert 'copied' not in result.stderr and 'records' not in result.stderr


@needs_root
def test_no_progress_in_a_unit_even_on_a_terminal(provider):
    """A unit's stderr may be a terminal (StandardError=tty): no progress there."""
    path = backed_up(provider)
    rc, shown = on_a_terminal(provider, path, 'restore', 'latest', CREDENTIALS_DIRECTORY=str(provider.world / 'creds'),
                              CACHE_DIRECTORY=str(provider.world / 'cache'))
    assert rc == 0, shown
    assert 'restored latest' in shown and 'copied' not in shown
