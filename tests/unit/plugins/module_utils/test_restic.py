# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""restic command lines and the instance plan: pure functions, checked as data."""

from __future__ import annotations

import pytest

from job_library import job_data
from ansible_collections.selfhost.backup.plugins.module_utils import _layout, _restic
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

REQUEST = {'user': 'postgres', 'backup_name': 'db.sql', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql -f -'}
SECRET = 'passphrase-value-123'


def settings(**changes):
    base = {
        'enable': True, 'repository': {'path': '/srv/backup/app'}, 'passphrase': SECRET, 'environment_secrets': {},
        'schedule': {'on_calendar': 'daily', 'randomized_delay_sec': 0, 'persistent': True}, 'retention': {},
        'check': {'enabled': False, 'on_calendar': 'weekly'}, 'limits': {}, 'lock_wait': 0,
        'restore': {'stop_units': []},
    }
    base.update(changes)
    # As provider_instances hands them over: the schema's defaults filled in.
    return _contract.fill_defaults(base, _contract.load_provider_schema('restic'))


@pytest.mark.parametrize('text, expected', [
    ('restic 0.14.0 compiled with go1.19.8 on linux/amd64', (0, 14, 0)),
    ('restic 0.18.0 compiled with go1.24.4 on linux/amd64\n', (0, 18, 0)),
    ('0.17.3', (0, 17, 3)),
])
def test_parse_version(text, expected):
    assert _restic.parse_version(text) == expected


@pytest.mark.parametrize('text', ['', 'borg 1.2.4', None, 'restic version unknown'])
def test_parse_version_refuses_garbage(text):
    with pytest.raises(_restic.ResticError):
        _restic.parse_version(text)


@pytest.mark.parametrize('version, modern, retry', [
    ((0, 14, 0), False, False), ((0, 16, 0), False, True), ((0, 16, 4), False, True),
    ((0, 17, 0), True, True), ((0, 18, 0), True, True), ((1, 0, 0), True, True),
])
def test_feature_gates(version, modern, retry):
    assert _restic.supports_stdin_from_command(version) is modern
    assert _restic.supports_retry_lock(version) is retry


def test_backup_args_modern_reads_the_command_itself():
    assert _restic.backup_args((0, 18, 0), 'app', 'db.sql', 'h1') == [
        'backup', '--json', '--stdin-from-command', '--stdin-filename', 'db.sql', '--tag', 'selfhost-backup:app',
        '--host', 'h1', '--']


def test_backup_args_legacy_reads_stdin_and_reports_json():
    assert _restic.backup_args((0, 14, 0), 'app', 'db.sql', 'h1') == [
        'backup', '--json', '--stdin', '--stdin-filename', 'db.sql', '--tag', 'selfhost-backup:app', '--host', 'h1']


@pytest.mark.parametrize('version, lock_wait, up, down, expected', [
    ((0, 14, 0), 60, None, None, []),
    ((0, 16, 0), 60, None, None, ['--retry-lock', '60s']),
    ((0, 18, 0), 0, 100, 200, ['--limit-upload', '100', '--limit-download', '200']),
])
def test_global_args(version, lock_wait, up, down, expected):
    assert _restic.global_args(version, lock_wait, up, down) == expected


def test_global_args_trust_the_given_ca_first():
    assert _restic.global_args((0, 18, 0), 30, cacert='/etc/ssl/ca.pem') == [
        '--cacert', '/etc/ssl/ca.pem', '--retry-lock', '30s']
    assert _restic.cacert_args(None) == [] and _restic.cacert_args('') == []


def test_forget_args_are_scoped_to_the_instance_tag():
    args = _restic.forget_args('app', 'h1', {'keep_last': 3, 'keep_daily': 7, 'keep_within': '30d'})
    assert args == ['forget', '--tag', 'selfhost-backup:app', '--host', 'h1', '--group-by', 'host,tags', '--keep-last', '3',
                    '--keep-daily', '7', '--keep-within', '30d', '--prune']


def test_forget_args_without_rules_keep_everything():
    assert _restic.forget_args('app', 'h1', {}) is None


@pytest.mark.parametrize('value', [0, -1, True, '3'])
def test_forget_args_refuse_bad_counts(value):
    with pytest.raises(_layout.ProviderError, match="keep_daily"):
        _restic.forget_args('app', 'h1', {'keep_daily': value})


def test_other_command_lines():
    assert _restic.check_args() == ['check']
    assert _restic.check_args('5%') == ['check', '--read-data-subset=5%']
    assert _restic.snapshots_args('app', 'h1') == ['snapshots', '--tag', 'selfhost-backup:app', '--host', 'h1']
    assert _restic.owned_snapshots_args('app', 'h1') == [
        'snapshots', '--json', '--tag', 'selfhost-backup:app', '--host', 'h1']
    assert _restic.dump_latest_args('app', 'h1', 'db.sql') == [
        'dump', '--tag', 'selfhost-backup:app', '--host', 'h1', '--path', '/db.sql', 'latest', '/db.sql']
    assert _restic.init_args() == ['init']
    assert _restic.probe_args() == ['cat', 'config']


@pytest.mark.parametrize('rc, stderr, state', [
    (0, '', 'present'),
    (10, 'Fatal: repository does not exist', 'absent'),
    (1, 'Fatal: unable to open config file: stat /r/config: no such file or directory\n'
        'Is there a repository at the following location?', 'absent'),
])
def test_probe_state(rc, stderr, state):
    assert _restic.probe_state(rc, stderr) == state


@pytest.mark.parametrize('rc, stderr', [(1, 'Fatal: wrong password or no key found'), (12, None)])
def test_probe_state_never_initialises_over_an_error(rc, stderr):
    with pytest.raises(_restic.ResticError, match='cannot open'):
        _restic.probe_state(rc, stderr)


# What restic says to an S3 server (rclone serve s3) that refuses the secret key, as checked with restic 0.14 and
# 0.18: 0.14 fails at once; 0.18 retries until coreutils' timeout stops it. Both end with the line a missing
# repository prints too.
S3_REFUSED_0_14 = ('Fatal: unable to open config file: Stat: The request signature we calculated does not match the '
                   'signature you provided. Check your key and signing method.\n'
                   'Is there a repository at the following location?\ns3:http://s3:9000/restic/db1\n')
S3_RETRY_0_18 = ('Stat(<config/>) returned error, retrying after 974.08602ms: Stat: The request signature we '
                 'calculated does not match the signature you provided. Check your key and signing method.\n')
S3_TIMED_OUT_0_18 = (S3_RETRY_0_18 * 3 + 'signal terminated received, cleaning up\n'
                     'Fatal: unable to open config file: context canceled\n'
                     'Is there a repository at the following location?\ns3:http://s3:9000/restic/db1\n')


@pytest.mark.parametrize('stderr', [
    S3_REFUSED_0_14,
    'Fatal: unable to open config file: Stat: Access Denied.\nIs there a repository at the following location?',
    'Fatal: unable to open config file: Stat: The AWS Access Key Id you provided does not exist in our records.\n'
    'Is there a repository at the following location?',
    'Fatal: unable to open config file: <config/> returned error: unexpected HTTP response (401): 401 Unauthorized\n'
    'Is there a repository at the following location?',
])
def test_probe_state_a_refused_credential_is_no_missing_repository(stderr):
    with pytest.raises(_restic.ResticError, match="server refused the credentials") as info:
        _restic.probe_state(1, stderr)
    # The message names restic's own words, its Fatal line, without the repository's location.
    assert 'Fatal: unable to open config file: Stat:' in str(info.value) or '401 Unauthorized' in str(info.value)
    assert 'Is there a repository' not in str(info.value)


def test_probe_state_a_probe_stopped_by_its_timeout_is_no_missing_repository():
    with pytest.raises(_restic.ResticError) as info:
        _restic.probe_state(124, S3_TIMED_OUT_0_18, 120)
    message = str(info.value)
    assert message.startswith('restic did not answer within 120 s (rc=124)')
    # The cause is restic's last retry message, not the "context canceled" of its end.
    assert message.endswith(S3_RETRY_0_18.strip()) and 'context canceled' not in message
    with pytest.raises(_restic.ResticError, match=r'did not answer in time \(rc=124\).*\(no output\)'):
        _restic.probe_state(124, '')


# A rest-server whose certificate another CA signed: restic 0.14 fails at once (and names a missing repository too),
# restic 0.18 retries until coreutils' timeout stops it.
TLS_0_14 = ('Fatal: unable to open config file: Stat: Head "https://fleet-tls:8000/fleet-g13/tls/config": x509: '
            'certificate signed by unknown authority\nIs there a repository at the following location?\n'
            'rest:https://fleet-g13:***@fleet-tls:8000/fleet-g13/tls/\n')
TLS_RETRY_0_18 = ('Stat(<config/>) returned error, retrying after 1.5s: Head "https://fleet-tls:8000/fleet-g13/tls/config": '
                  'tls: failed to verify certificate: x509: certificate signed by unknown authority\n')


@pytest.mark.parametrize('rc, stderr', [
    (1, TLS_0_14),
    (124, TLS_RETRY_0_18 * 3 + 'Fatal: unable to open config file: context canceled\n'
     'Is there a repository at the following location?\n'),
])
def test_probe_state_an_untrusted_certificate_is_a_tls_error_never_a_missing_repository(rc, stderr):
    with pytest.raises(_restic.ResticError) as info:
        _restic.probe_state(rc, stderr, 120)
    message = str(info.value)
    assert message.startswith("the TLS certificate of the repository's server is not trusted (give the CA that "
                              'signed it in settings.cacert')
    # restic's own words: the x509 line.
    assert message.endswith('x509: certificate signed by unknown authority')
    assert 'Is there a repository' not in message


# A certificate restic rejects for another reason than its CA (Go's x509 words): settings.cacert would not help, so
# the message does not send the user there (review of issue 19); it quotes restic's line.
EXPIRED = ('x509: certificate has expired or is not yet valid: current time 2026-12-07T06:00:00Z is after '
           '2026-12-01T00:00:00Z')
WRONG_NAME = 'x509: certificate is valid for backup.example.org, not fleet-tls'
NO_NAMES = 'x509: certificate is not valid for any names, but wanted to match fleet-tls'


@pytest.mark.parametrize('rc, stderr, line', [
    (1, f'Fatal: unable to open config file: Stat: Head "https://s3:9000/b/config": {EXPIRED}\n'
        'Is there a repository at the following location?\n', f'Head "https://s3:9000/b/config": {EXPIRED}'),
    (124, f'Stat(<config/>) returned error, retrying after 1.5s: Head "https://fleet-tls:8000/g/tls/config": '
          f'tls: failed to verify certificate: {WRONG_NAME}\n' * 2 + 'Fatal: unable to open config file: context canceled\n',
     f'tls: failed to verify certificate: {WRONG_NAME}'),
    (1, f'Fatal: unable to open config file: Stat: Head "https://fleet-tls:8000/g/tls/config": {NO_NAMES}\n', NO_NAMES),
], ids=['expired', 'another-name', 'no-names'])
def test_probe_state_a_certificate_rejected_for_another_reason_than_its_ca_says_so(rc, stderr, line):
    with pytest.raises(_restic.ResticError) as info:
        _restic.probe_state(rc, stderr, 120)
    message = str(info.value)
    assert message.startswith("the TLS certificate of the repository's server was rejected; restic said: ")
    assert message.endswith(line)
    assert 'settings.cacert' not in message and 'not trusted' not in message and 'Is there a repository' not in message


def test_probe_state_a_server_that_does_not_speak_tls_is_a_failed_connection():
    stderr = ('Fatal: unable to open config file: Stat: Head "https://fleet-tls:8000/g/tls/config": '
              'http: server gave HTTP response to HTTPS client: tls: first record does not look like a TLS handshake\n')
    with pytest.raises(_restic.ResticError) as info:
        _restic.probe_state(1, stderr, 120)
    message = str(info.value)
    assert message.startswith("the TLS connection to the repository's server failed; restic said: ")
    assert message.endswith('tls: first record does not look like a TLS handshake')
    assert 'settings.cacert' not in message


def test_plan_trusts_the_ca_of_settings_cacert():
    plan = _restic.plan('app', REQUEST, settings(repository={'url': 'rest:https://u:p@server:8000/app/'},
                                                 cacert='/etc/ssl/private-ca.pem'), (0, 18, 0), 'db1')
    data = job_data(plan.timer['restore_script']['content'])
    assert data['RESTIC_ARGS'][:2] == ['--cacert', '/etc/ssl/private-ca.pem']


def test_settings_cacert_must_be_an_absolute_path():
    schema = _contract.load_provider_schema('restic')
    assert 'cacert' in schema['properties'] and schema['properties']['cacert']['pattern'].startswith('^/')
    assert 'cacert' not in settings()


@pytest.mark.parametrize('stderr', [
    # restic 0.14 and 0.18 on an S3 bucket that does not exist yet, and on a key (repository) not in the bucket.
    'Fatal: unable to open config file: Stat: The specified bucket does not exist\n'
    'Is there a repository at the following location?\ns3:http://s3:9000/restic/db1',
    'Fatal: repository does not exist: unable to open config file: Stat: The specified key does not exist.\n'
    'Is there a repository at the following location?\ns3:http://s3:9000/restic/db2',
])
def test_probe_state_a_missing_s3_repository_is_absent(stderr):
    assert _restic.probe_state(1 if 'bucket' in stderr else 10, stderr) == 'absent'


def test_plan_legacy_local_repository():
    plan = _restic.plan('app', REQUEST, settings(), 'restic 0.14.0 compiled', 'db1')
    timer = plan.timer
    data = job_data(timer['restore_script']['content'])
    assert timer['name'] == 'restic-backup-app'
    assert timer['user'] == 'postgres'
    assert timer['exec_start'] == [['/bin/bash', '/usr/local/bin/restic-restore-app', 'backup']]
    assert timer['read_write_paths'] == ['/srv/backup/app']
    assert timer['wants'] == [] and timer['extra_jobs'] == []
    assert timer['credentials'] == {
        'passphrase': '/etc/selfhost-backup/restic/app/passphrase',
        'env.RESTIC_REPOSITORY': '/etc/selfhost-backup/restic/app/env.RESTIC_REPOSITORY',
    }
    assert data['RESTIC_STDIN_FROM_COMMAND'] == ''
    assert data['RESTIC_BACKUP'] == ['backup', '--json', '--stdin', '--stdin-filename', 'db.sql',
                                     '--tag', 'selfhost-backup:app', '--host', 'db1']
    assert data['RESTIC_DUMP_LATEST'] == ['dump', '--tag', 'selfhost-backup:app', '--host', 'db1',
                                          '--path', '/db.sql', 'latest', '/db.sql']
    assert data['RESTIC_DUMP_PATH'] == '/db.sql'
    assert data['RESTIC_FORGET'] == [] and data['RESTIC_CHECK'] == [] and data['MAINTENANCE'] == ['backup']
    assert data['ENV_SECRETS'] == ['RESTIC_REPOSITORY'] and data['SECRET_FILES'] == timer['credentials']
    assert SECRET not in str(timer)
    assert plan.local_path == '/srv/backup/app'
    assert dict(plan.secret_files) == {
        '/etc/selfhost-backup/restic/app/passphrase': SECRET,
        '/etc/selfhost-backup/restic/app/env.RESTIC_REPOSITORY': '/srv/backup/app',
    }


def test_plan_modern_remote_with_everything():
    url = 'rest:http://backup:restpw@server:8000/app/'
    plan = _restic.plan('app', REQUEST, settings(
        repository={'url': url}, host='named', environment_secrets={'AWS_SECRET_ACCESS_KEY': 'aws-secret'},
        retention={'keep_last': 2}, check={'enabled': True, 'on_calendar': 'Sun 04:00', 'read_data_subset': '5%'},
        limits={'nice': 5, 'ionice_class': 'idle', 'upload_kib': 10}, lock_wait=30,
        restore={'stop_units': ['app.service']},
        schedule={'on_calendar': 'hourly', 'randomized_delay_sec': 9, 'persistent': False},
    ), (0, 18, 0), 'db1', binary='/usr/local/bin/restic')
    timer = plan.timer
    data = job_data(timer['restore_script']['content'])
    assert data['RESTIC_STDIN_FROM_COMMAND'] == 'yes'
    assert data['RESTIC_BACKUP'] == ['backup', '--json', '--stdin-from-command', '--stdin-filename', 'db.sql',
                                     '--tag', 'selfhost-backup:app', '--host', 'named', '--']
    assert data['RESTIC'] == '/usr/local/bin/restic'
    assert data['RESTIC_ARGS'] == ['--retry-lock', '30s', '--limit-upload', '10']
    assert data['RESTIC_FORGET'] == ['forget', '--tag', 'selfhost-backup:app', '--host', 'named',
                                     '--group-by', 'host,tags', '--keep-last', '2', '--prune']
    assert data['RESTIC_CHECK'] == ['check', '--read-data-subset=5%'] and data['MAINTENANCE'] == ['backup', 'check']
    assert data['STOP_UNITS'] == ['app.service']
    assert data['ENV_SECRETS'] == ['AWS_SECRET_ACCESS_KEY', 'RESTIC_REPOSITORY']
    assert timer['extra_jobs'] == [{
        'suffix': 'check', 'on_calendar': 'Sun 04:00',
        'exec_start': [['/bin/bash', '/usr/local/bin/restic-restore-app', 'check']],
        'description': 'restic check of instance app'}]
    assert timer['wants'] == ['network-online.target'] == timer['after']
    assert timer['read_write_paths'] == []
    assert (timer['nice'], timer['io_scheduling_class']) == (5, 'idle')
    assert (timer['on_calendar'], timer['randomized_delay_sec'], timer['persistent']) == ('hourly', 9, False)
    for secret in (url, 'restpw', 'aws-secret', SECRET):
        assert secret not in str(timer)
    assert plan.env_files == {
        'AWS_SECRET_ACCESS_KEY': '/etc/selfhost-backup/restic/app/env.AWS_SECRET_ACCESS_KEY',
        'RESTIC_REPOSITORY': '/etc/selfhost-backup/restic/app/env.RESTIC_REPOSITORY',
    }
    assert plan.local_path is None


def test_plan_with_passphrase_file_writes_no_passphrase():
    plan = _restic.plan('app', REQUEST, settings(passphrase=None, passphrase_file='/etc/app.pass'), '0.14.0', 'h')
    assert plan.credentials['passphrase'] == '/etc/app.pass'
    assert [dest for dest, dummy in plan.secret_files] == ['/etc/selfhost-backup/restic/app/env.RESTIC_REPOSITORY']


@pytest.mark.parametrize('name', ['RESTIC_PASSWORD', 'RESTIC_REPOSITORY', 'RESTIC_PASSWORD_COMMAND'])
def test_plan_refuses_reserved_environment(name):
    with pytest.raises(_restic.ResticError, match=name):
        _restic.plan('app', REQUEST, settings(environment_secrets={name: 'x'}), '0.18.0', 'h')


def test_plan_refuses_a_bad_instance_name():
    with pytest.raises(_layout.ProviderError, match='instance name'):
        _restic.plan('../x', REQUEST, settings(), '0.18.0', 'h')


@pytest.mark.parametrize('name', ['PATH', 'LD_PRELOAD', 'BASH_ENV', 'HOME', 'JOB_USER', 'BACKUP_CMD', 'RESTIC_ARGS',
                                  'SCRIPT', 'CREDENTIALS_DIRECTORY', 'SELFHOST_BACKUP_FORGET_RETRY_SECONDS'])
def test_environment_secrets_may_not_take_the_names_of_the_shell_or_the_script(name):
    with pytest.raises(_layout.ProviderError, match=f'environment_secrets.{name}: the name is taken'):
        _restic.plan('app', REQUEST, settings(environment_secrets={name: 'x'}), (0, 18, 0), 'db1')


def test_snapshots_json_reads_this_instance_s_snapshots_with_their_fields():
    data = dict(_restic.shell_data(_restic.Commands(binary='/usr/bin/restic', version=(0, 18, 0), instance='app',
                                                    backup_name='db.sql', host='h1')))
    assert data['RESTIC_OWNED'] == ['snapshots', '--json', '--tag', 'selfhost-backup:app', '--host', 'h1']
    assert data['RESTIC_SNAPSHOT_FIELDS'] == ['.', 'id=id', 'time=time', 'host=hostname',
                                              'size=summary.total_bytes_processed']
