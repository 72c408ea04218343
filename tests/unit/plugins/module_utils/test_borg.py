# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""borg command lines per version, archive names and globs, the instance plan, the SSH helpers."""

from __future__ import annotations

import fnmatch
import re

import pytest

from job_library import job_data
from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _borg_ssh, _layout
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

REQUEST = {'user': 'postgres', 'backup_name': 'db.sql', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}
KNOWN = 'backup.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3x'
B12, B14 = (1, 2, 4), (1, 4, 0)
DEFAULT_CHUNKER = _contract.load_provider_schema('borg')['properties']['chunker_params']['default']


def settings(**changes):
    values = {'enable': True, 'repository': {'path': '/srv/borg/app'}, 'passphrase': 'pw-123',
              'encryption': 'repokey-blake2', 'compression': 'zstd,3', 'lock_wait': 300,
              'schedule': {'on_calendar': 'daily', 'randomized_delay_sec': 0, 'persistent': True},
              'retention': {}, 'check': {'enabled': False, 'on_calendar': 'weekly', 'verify_data': False},
              'limits': {}, 'restore': {'stop_units': []}}
    values.update(changes)
    # As provider_instances hands them over: the schema's defaults filled in.
    return _contract.fill_defaults(values, _contract.load_provider_schema('borg'))


@pytest.mark.parametrize('text, version', [
    ('borg 1.2.4', (1, 2, 4)),
    ('borg 1.4.0\n', (1, 4, 0)),
    ('borg-linux64 1.2.8', (1, 2, 8)),
    ('1.4.1', (1, 4, 1)),
])
def test_parse_version(text, version):
    assert _borg.parse_version(text) == version


@pytest.mark.parametrize('text', ['', 'borg', None, 'restic 0.14.0 compiled'])
def test_parse_version_refuses_garbage(text):
    with pytest.raises(_borg.BorgError):
        _borg.parse_version(text)


@pytest.mark.parametrize('version', [B12, B14])
def test_create_uses_content_from_command_on_1_2_and_1_4(version):
    args = _borg.create_args(version, 'app', 'db1', 'db.sql', 'zstd,3')
    assert args == ['create', '--json', '--compression', 'zstd,3', '--content-from-command', '--stdin-name', 'db.sql',
                    '::app@db1-{utcnow:%Y-%m-%dT%H:%M:%S.%f}', '--']


@pytest.mark.parametrize('params', ['default', 'fixed,4194304', 'fixed,65536,512', '19,23,21,4095',
                                    'buzhash,19,23,21,4095', 'buzhash,16,20,18,4095', 'buzhash,6,23,6,63'])
def test_chunker_params_borg_accepts_go_to_create(params):
    args = _borg.create_args(B14, 'app', 'db1', 'db.sql', 'zstd,3', params)
    assert args[4:6] == ['--chunker-params', params]
    plan = _borg.plan('app', REQUEST, settings(chunker_params=params), B12, 'db1')
    assert job_data(plan.timer['restore_script']['content'])['BORG_CREATE'][4:6] == ['--chunker-params', params]


@pytest.mark.parametrize('params, message', [
    ('buzhash,16,20,21,4095', 'MIN_EXP <= MASK_BITS <= MAX_EXP'),
    ('buzhash,5,20,10,4095', r'6 \(64 B\) to 23'),
    ('buzhash,16,24,18,4095', r'6 \(64 B\) to 23'),
    ('buzhash,16,20,18,4096', 'odd'),
    ('fixed,63', '64 bytes'),
    ('fixed,65536,99999999', 'header size'),
    ('buzhash,16,20,18', 'not default'),
])
def test_chunker_params_borg_refuses_fail_before_any_host_is_touched(params, message):
    with pytest.raises(_borg.BorgError, match=message):
        _borg.precheck('app', REQUEST, settings(chunker_params=params), 'db1')
    with pytest.raises(_borg.BorgError, match=message):
        _borg.plan('app', REQUEST, settings(chunker_params=params), B14, 'db1')


@pytest.mark.parametrize('params, valid', [
    ('buzhash,16,20,18,4095', True), ('19,23,21,4095', True), ('fixed,4096', True), ('default', True),
    ('buzhash,16,20,18', False), ('fixed', False), ('rabin,1,2,3,4', False), ('buzhash,16,20,18,4095 ', False),
    ('--chunker-params=1', False),
])
def test_chunker_params_schema_form(params, valid):
    errors = _contract.collect_violations(settings(chunker_params=params), _contract.load_provider_schema('borg'), 's')
    assert (errors == []) is valid, errors


@pytest.mark.parametrize('version', [(1, 1, 18), (1, 0, 0), (0, 30, 0)])
def test_borg_older_than_1_2_is_refused(version):
    with pytest.raises(_borg.BorgError, match='>= 1.2'):
        _borg.create_args(version, 'app', 'db1', 'db.sql', 'zstd,3')
    with pytest.raises(_borg.BorgError):
        _borg.plan('app', REQUEST, settings(), version, 'db1')


def test_modern_exit_codes_exist_from_1_4():
    assert not _borg.knows_modern_exit_codes(B12)
    assert _borg.knows_modern_exit_codes(B14)


@pytest.mark.parametrize('command, rc, ok', [
    ('create', 0, True), ('create', 1, True), ('create', 2, False), ('create', 130, False),
    ('prune', 1, True), ('compact', 1, True),
    # borg 1.4's modern codes never reach the policy (BORG_EXIT_CODES=legacy); were they to, they fail.
    ('create', 100, False), ('create', 13, False),
    ('extract', 1, False), ('check', 1, False), ('list', 1, False), ('init', 1, False), ('extract', 0, True),
])
def test_exit_code_policy(command, rc, ok):
    assert _borg.succeeded(command, rc) is ok


def test_archive_names_glob_and_pattern_are_per_instance_and_host():
    # (instance, host) -> an archive name of that pair: names that share prefixes on either side.
    names = {
        ('app', 'db1'): 'app@db1-2026-11-27T23:09:24.405405',
        ('app-2', 'db1'): 'app-2@db1-2026-11-27T23:09:25.020020',
        ('app', 'db1-2'): 'app@db1-2-2026-11-27T23:09:25.020020',
        ('app', 'db1-2026-11-27T10'): 'app@db1-2026-11-27T10-2026-11-27T23:09:25.020020',
        ('app-2026-11-27T10', 'db1'): 'app-2026-11-27T10@db1-2026-11-27T23:09:25.020020',
        ('app.x', 'db1.example'): 'app.x@db1.example-2026-11-27T23:09:25.020020',
        ('app', 'db2'): 'app@db2-2026-11-27T23:09:25.020020',
    }
    for (instance, host), name in names.items():
        glob = _borg.archive_glob(instance, host)
        pattern = _borg.archive_pattern(instance, host)
        for other, other_name in names.items():
            assert fnmatch.fnmatchcase(other_name, glob) == (other == (instance, host)), (glob, other_name)
            assert bool(re.search(pattern, other_name)) == (other == (instance, host)), (pattern, other_name)
    assert not re.search(_borg.archive_pattern('app', 'db1'), 'app@db1-2026-11-27T23:09:24.405405.checkpoint')
    assert not re.search(_borg.archive_pattern('app', 'db1'), 'app@db1x2026-11-27T23:09:24.405405')
    assert not re.search(_borg.archive_pattern('app', 'db.1'), 'app@dbx1-2026-11-27T23:09:24.405405')
    # The names of before 0.1.0's host part are not this host's.
    assert not re.search(_borg.archive_pattern('app', 'db1'), 'app-2026-11-27T23:09:24.405405')
    assert _borg.archive_template('app', 'db1') == 'app@db1-{utcnow:%Y-%m-%dT%H:%M:%S.%f}'


@pytest.mark.parametrize('instance, host', [('../x', 'h'), ('a*', 'h'), ('a b', 'h'), ('', 'h'), ('a@b', 'h'),
                                            ('app', 'h@x'), ('app', 'h*'), ('app', '-h'), ('app', ''),
                                            ('app', 'fe80::1'), ('app', 'h/x')])
def test_glob_refuses_bad_instance_and_host_names(instance, host):
    with pytest.raises((_layout.ProviderError, _borg.BorgError)):
        _borg.archive_glob(instance, host)


def test_list_latest_extract_init():
    glob = _borg.archive_glob('app', 'db1')
    assert _borg.list_args('app', 'db1') == ['list', '--glob-archives', glob]
    assert _borg.names_args('app', 'db1') == ['list', '--short', '--glob-archives', glob]
    assert _borg.latest_args('app', 'db1') == ['list', '--short', '--last', '1', '--glob-archives', glob]
    assert _borg.init_args('repokey-blake2') == ['init', '--encryption', 'repokey-blake2']
    assert _borg.init_args('authenticated') == ['init', '--encryption', 'authenticated']
    assert _borg.compact_args() == ['compact']


def test_prune_is_scoped_to_the_instance():
    args = _borg.prune_args('app', 'db1', {'keep_daily': 7, 'keep_weekly': 4, 'keep_within': '2d', 'keep_last': None})
    assert args == ['prune', '--glob-archives', _borg.archive_glob('app', 'db1'), '--keep-daily', '7',
                    '--keep-weekly', '4', '--keep-within', '2d']
    assert _borg.prune_args('app', 'db1', {}) is None


@pytest.mark.parametrize('value', [0, -1, True, '3'])
def test_prune_refuses_bad_keep_values(value):
    with pytest.raises(_layout.ProviderError, match="keep_daily"):
        _borg.prune_args('app', 'db1', {'keep_daily': value})


def test_check_args():
    assert _borg.check_args() == ['check']
    assert _borg.check_args(verify_data=True) == ['check', '--verify-data']
    assert _borg.check_args(max_duration=600) == ['check', '--repository-only', '--max-duration', '600']
    with pytest.raises(_borg.BorgError):
        _borg.check_args(True, 600)


def test_global_args():
    assert _borg.global_args() == ['--lock-wait', '0']
    assert _borg.global_args(300, 512) == ['--lock-wait', '300', '--upload-ratelimit', '512']


@pytest.mark.parametrize('url, parsed, known, serve', [
    ('ssh://borg@backup.example/srv/borg/app', ('borg', 'backup.example', None, '/srv/borg/app'), 'backup.example', '/srv/borg/app'),
    ('ssh://borg@backup.example:2222/./app', ('borg', 'backup.example', 2222, '/./app'), '[backup.example]:2222', 'app'),
    ('ssh://b@h:22/~/r', ('b', 'h', 22, '/~/r'), 'h', 'r'),
])
def test_parse_ssh_url(url, parsed, known, serve):
    result = _borg_ssh.parse_ssh_url(url)
    assert (result.user, result.host, result.port, result.path) == parsed
    assert result.known_hosts_name == known
    assert result.serve_path == serve


@pytest.mark.parametrize('url', ['sftp://b@h/x', 'ssh://h/x', 'ssh://b@h:99999/x', 'ssh://b@h', '', 'ssh://b@h/x y'])
def test_parse_ssh_url_refuses(url):
    with pytest.raises(_borg_ssh.SshError):
        _borg_ssh.parse_ssh_url(url)


def test_authorized_keys_line():
    line = _borg_ssh.authorized_keys_line('ssh-ed25519 AAAA borg-backup-app\n', '/srv/borg/app')
    assert line == 'command="borg serve --restrict-to-path /srv/borg/app --append-only",restrict ssh-ed25519 AAAA borg-backup-app'
    assert '--append-only' not in _borg_ssh.authorized_keys_line('ssh-ed25519 AAAA', '/x', append_only=False)


@pytest.mark.parametrize('public_key', [
    'ssh-ed25519 AAAA c\nssh-ed25519 BBBB unrestricted',  # a second line would reach the server unrestricted
    'ssh-ed25519 AAAA c\rssh-ed25519 BBBB x',
    'no-pty ssh-ed25519 AAAA c',  # options in front of the key
    'command="sh" ssh-ed25519 AAAA c',
    'k', '',
])
def test_authorized_keys_line_takes_one_key_line_without_options(public_key):
    with pytest.raises(_borg_ssh.SshError, match='not one line'):
        _borg_ssh.authorized_keys_line(public_key, '/srv/borg/app')
    with pytest.raises(_borg_ssh.SshError, match='not one line'):
        _borg_ssh.server_authorized_keys_line(public_key, '/srv/borg/db1/app')


# A real ed25519 public key (ssh-keygen -t ed25519), and its key field.
JOB_KEY = 'AAAAC3NzaC1lZDI1NTE5AAAAIHL6Nxht88rU8mbJuymhvn99fFxIHneZNHiTkUqXD1TX'
OPTIONS = 'command="borg serve --append-only --restrict-to-repository /srv/borg/db1/app",restrict'


def test_server_job_line_rebuilds_the_line_with_the_planned_comment():
    # The file's own comment is not used: a client writing another host's comment cannot name that host's line.
    for comment in ('borg-backup-app@db1', 'borg-backup-app@otherhost', 'anything'):
        line = _borg_ssh.server_job_line(OPTIONS, f'ssh-ed25519 {JOB_KEY} {comment}\n', 'borg-backup-app@db1')
        assert line == f'{OPTIONS} ssh-ed25519 {JOB_KEY} borg-backup-app@db1'
    assert _borg_ssh.job_public_key(f'  ssh-ed25519 {JOB_KEY} c  \n\n') == f'ssh-ed25519 {JOB_KEY}'


@pytest.mark.parametrize('content', [
    f'ssh-ed25519 {JOB_KEY} borg-backup-app@db1\nssh-ed25519 {JOB_KEY} second',  # a second line
    f'ssh-ed25519 {JOB_KEY} borg-backup-app@db1\n\ncommand="sh" ssh-ed25519 {JOB_KEY} x',
    f'ssh-ed25519 {JOB_KEY} c\rssh-ed25519 {JOB_KEY} x',
    f'no-pty ssh-ed25519 {JOB_KEY} c',  # options
    f'ssh-ed25519 {JOB_KEY}',  # no comment (ssh-keygen always writes one)
    f'ssh-ed25519 {JOB_KEY} two words',
    f'ssh-rsa {JOB_KEY} c',  # another type
    'ssh-ed25519 AAAA c',  # not an ed25519 key
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHL6Nxht88rU8mbJuymhvn99fFxIHneZNHiTkUqXD1TXAAAA c',  # too long
    'ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7vbqajDRET c',  # an RSA blob named ed25519
    'ssh-ed25519 !!!! c',
    '',
])
def test_server_job_line_refuses_anything_but_one_ed25519_line(content):
    with pytest.raises(_borg_ssh.SshError, match='not exactly one line "ssh-ed25519 <key> <comment>"'):
        _borg_ssh.server_job_line(OPTIONS, content, 'borg-backup-app@db1')


@pytest.mark.parametrize('options, comment, message', [
    ('command="sh",restrict', 'borg-backup-app@db1', "not a backup server's borg serve command"),
    ('', 'borg-backup-app@db1', "not a backup server's borg serve command"),
    (OPTIONS, 'two words', 'not <job>@<host>'),
    (OPTIONS, 'x\nssh-ed25519 K y', 'not <job>@<host>'),
    (OPTIONS, '', 'not <job>@<host>'),
])
def test_server_job_line_refuses_bad_options_or_comments(options, comment, message):
    with pytest.raises(_borg_ssh.SshError, match=message):
        _borg_ssh.server_job_line(options, f'ssh-ed25519 {JOB_KEY} c', comment)


def test_rsh_pins_the_host_key_and_uses_only_the_job_key():
    rsh = _borg_ssh.rsh('/run/credentials/x')
    assert '-i /run/credentials/x/ssh_key' in rsh
    assert 'UserKnownHostsFile=/run/credentials/x/known_hosts' in rsh
    assert 'StrictHostKeyChecking=yes' in rsh and 'IdentitiesOnly=yes' in rsh and 'BatchMode=yes' in rsh
    assert 'StrictHostKeyChecking=no' not in rsh


def test_plan_local_repository():
    plan = _borg.plan('app', REQUEST, settings(), 'borg 1.2.4', 'db1')
    timer = plan.timer
    assert timer['name'] == 'borg-backup-app'
    assert timer['user'] == 'postgres'
    assert timer['credentials'] == {'passphrase': '/etc/selfhost-backup/borg/app/passphrase'}
    assert timer['read_write_paths'] == ['/srv/borg/app']
    assert timer['cache_directory'] == 'borg-backup-app'
    assert timer['wants'] == [] and timer['extra_jobs'] == []
    assert timer['restore_script']['name'] == 'borg-restore-app'
    assert plan.secret_files == (('/etc/selfhost-backup/borg/app/passphrase', 'pw-123'),)
    assert plan.local_path == '/srv/borg/app' and plan.ssh_key is None and plan.known_hosts is None
    data = job_data(timer['restore_script']['content'])
    assert 'pw-123' not in str(timer)
    assert data['BORG_REPOSITORY'] == '/srv/borg/app' and data['BORG_REMOTE'] == ''
    assert data['BORG_HOME'] == '/var/cache/borg-backup-app'
    assert data['BORG_INIT_MARKER'] == f'/var/cache/borg-backup-app/{_borg.INIT_MARKER}'
    assert data['BORG_CREATE'] == ['create', '--json', '--compression', 'zstd,3', '--chunker-params', DEFAULT_CHUNKER,
                                   '--content-from-command', '--stdin-name', 'db.sql',
                                   '::app@db1-{utcnow:%Y-%m-%dT%H:%M:%S.%f}', '--']
    assert data['BORG_ARGS'] == ['--lock-wait', '300']
    assert data['BORG_PRUNE'] == [] and data['BORG_CHECK'] == [] and data['MAINTENANCE'] == ['backup']
    assert data['SNAPSHOT_WORD'] == 'archive' and data['SNAPSHOT_PATTERN'] == _borg.archive_pattern('app', 'db1')


def test_plan_remote_repository_with_everything():
    plan = _borg.plan('off.site', REQUEST, settings(
        repository={'url': 'ssh://borg@backup.example:2222/srv/borg/app'}, passphrase=None,
        passphrase_file='/root/borg.pass', ssh={'known_hosts': f'[backup.example]:2222 {KNOWN[15:]}'},
        retention={'keep_daily': 7}, check={'enabled': True, 'on_calendar': 'monthly', 'max_duration': 600},
        limits={'upload_ratelimit': 1000, 'nice': 10, 'ionice_class': 'idle'}, compression='lz4',
        encryption='repokey', restore={'stop_units': ['app.service']}, host='db-renamed'), (1, 4, 0), 'db1')
    timer = plan.timer
    assert timer['credentials'] == {'passphrase': '/root/borg.pass',
                                    'ssh_key': '/etc/selfhost-backup/borg/off.site/ssh_key',
                                    'known_hosts': '/etc/selfhost-backup/borg/off.site/known_hosts'}
    assert plan.secret_files == ()
    assert plan.ssh_key == '/etc/selfhost-backup/borg/off.site/ssh_key'
    assert plan.known_hosts.endswith('\n') and plan.serve_path == '/srv/borg/app'
    assert timer['wants'] == ['network-online.target'] and timer['read_write_paths'] == []
    assert timer['nice'] == 10 and timer['io_scheduling_class'] == 'idle'
    assert timer['extra_jobs'][0]['suffix'] == 'check' and timer['extra_jobs'][0]['on_calendar'] == 'monthly'
    script = timer['restore_script']['content']
    data = job_data(script)
    assert data['BORG_REPOSITORY'] == 'ssh://borg@backup.example:2222/srv/borg/app' and data['BORG_REMOTE'] == 'yes'
    assert data['BORG_ARGS'] == ['--lock-wait', '300', '--upload-ratelimit', '1000']
    assert data['BORG_CREATE'][:4] == ['create', '--json', '--compression', 'lz4']
    assert data['BORG_INIT'] == ['init', '--encryption', 'repokey']
    assert data['BORG_PRUNE'] == ['prune', '--glob-archives', _borg.archive_glob('off.site', 'db-renamed'),
                                  '--keep-daily', '7']
    assert '::off.site@db-renamed-{utcnow:%Y-%m-%dT%H:%M:%S.%f}' in data['BORG_CREATE'] and '@db1' not in script
    assert data['BORG_COMPACT'] == ['compact']
    assert data['BORG_CHECK'] == ['check', '--repository-only', '--max-duration', '600']
    assert data['MAINTENANCE'] == ['backup', 'check']
    assert data['BORG_SSH'] == _borg_ssh.ssh_command() and 'StrictHostKeyChecking=yes' in data['BORG_SSH']
    assert data['STOP_UNITS'] == ['app.service']


@pytest.mark.parametrize('changes, message', [
    ({'repository': {'url': 'ssh://borg@h/x'}, 'ssh': {}}, 'known_hosts'),
    ({'repository': {'url': 'ssh://borg@h:2222/x'}, 'ssh': {'known_hosts': 'h ssh-ed25519 AAAA'}}, r'\[h\]:2222'),
    ({'repository': {'url': 'sftp://borg@h/x'}, 'ssh': {'known_hosts': 'h ssh-ed25519 AAAA'}}, 'ssh://'),
])
def test_plan_refuses_bad_remote_settings(changes, message):
    with pytest.raises(_borg.BorgError, match=message):
        _borg.plan('app', REQUEST, settings(**changes), B12, 'db1')


@pytest.mark.parametrize('text, name, found', [
    ('h ssh-ed25519 AAAA', 'h', True),
    ('other,h ssh-ed25519 AAAA\n', 'h', True),
    ('hh ssh-ed25519 AAAA', 'h', False),
    ('[h]:2222 ssh-ed25519 AAAA', 'h', False),
    ('[h]:2222 ssh-ed25519 AAAA', '[h]:2222', True),
    ('|1|abc=|def= ssh-ed25519 AAAA', 'h', True),
    ('', 'h', False),
])
def test_names_server(text, name, found):
    assert _borg_ssh.names_server(text, name) is found


def test_writable_paths_join_the_repository_in_read_write_paths():
    plan = _borg.plan('app', REQUEST, settings(writable_paths=['/var/lib/app']), B14, 'db1')
    assert plan.timer['read_write_paths'] == ['/srv/borg/app', '/var/lib/app']
    remote = _borg.plan('app', REQUEST, settings(repository={'url': 'ssh://borg@backup.example/x'}, ssh={'known_hosts': KNOWN},
                                                 writable_paths=['/var/lib/app']), B14, 'db1')
    assert remote.timer['read_write_paths'] == ['/var/lib/app']


def test_snapshots_json_lists_this_instance_s_archives_with_their_host():
    data = dict(_borg.shell_data(_borg.Commands(
        binary='/usr/bin/borg', version=(1, 2, 4), instance='app', host='h1', backup_name='db.sql',
        repository='/srv/app', cache_dir='/var/cache/borg-backup-app', encryption='repokey-blake2',
        compression='zstd,3')))
    assert data['BORG_LIST_JSON'] == ['list', '--json', '--format', '{hostname}', '--glob-archives',
                                      _borg.archive_glob('app', 'h1')]
    assert data['BORG_SNAPSHOT_FIELDS'] == ['archives', 'id=name', 'time=time', 'host=hostname', 'size=size']
