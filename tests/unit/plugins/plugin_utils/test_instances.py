# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every instance of a provider checked on the controller before any host task: each bad input named."""

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _instances

REQUEST = {'user': 'postgres', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}
# Both quote kinds, backslash, $, backtick, %, non-ASCII: never quoted back in a message.
SECRET = 'p\'a"s\\s$w`o%rd-ünï'
RESTIC = {'repository': {'path': '/srv/backup/app'}, 'passphrase': SECRET}
BORG = {'repository': {'path': '/srv/borg/app'}, 'passphrase': SECRET}
KNOWN_HOSTS = 'borg-server ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3xk0/TRt+7Ng== root@borg-server'


def instance(settings, request=None):
    return {'request': dict(REQUEST) if request is None else request, 'settings': settings}


def violations(provider, instances):
    checked = _instances.check(provider, instances, 'db1')
    for text in checked.violations:
        assert SECRET not in text
    return checked.violations


def test_valid_instances_come_back_filled_in_with_their_calendars():
    checked = _instances.check('restic', {
        'app': instance(RESTIC | {'check': {'enabled': True, 'on_calendar': 'Sat 03:00'}}),
        'other': instance(RESTIC | {'schedule': {'on_calendar': 'hourly'}}),
    }, 'db1')
    assert checked.violations == []
    assert checked.instances['app']['settings']['lock_wait'] == 300
    assert checked.instances['app']['request']['backup_name'] == 'dump'
    assert checked.calendars == {
        'daily': ['restic_instances.app.settings.schedule.on_calendar'],
        'Sat 03:00': ['restic_instances.app.settings.check.on_calendar'],
        'hourly': ['restic_instances.other.settings.schedule.on_calendar'],
    }


@pytest.mark.parametrize('value', [None, {}])
def test_no_instances_is_an_empty_dict(value):
    assert _instances.check('borg', value, 'db1') == _instances.Checked({}, {}, [])


def test_instances_that_are_not_a_dict_are_refused():
    assert violations('restic', ['app']) == [
        'restic_instances: must be a dict of instance name -> {request, settings}, got list (rule: type)']


def test_an_integer_name_says_what_yaml_did():
    assert violations('restic', {1: instance(RESTIC)}) == [
        'restic_instances[1]: instance name must be a string, got int (YAML reads an unquoted 1, 1.5 or yes as a '
        'number or a boolean: quote it) (rule: type)']


@pytest.mark.parametrize('name', ['app\n', 'app/x', '-app', '', 'a' * 65])
def test_a_name_must_match_as_a_whole(name):
    found = violations('restic', {name: instance(RESTIC)})
    assert len(found) == 1 and 'instance name must match' in found[0] and '(rule: pattern)' in found[0]


def test_instances_whose_units_collide_are_named_both():
    found = violations('restic', {'web': instance(RESTIC), 'web-check': instance(RESTIC),
                                  'web-notify': instance(RESTIC)})
    assert found == [
        "restic_instances: instances 'web' and 'web-check' would both own restic-backup-web-check.service, "
        'restic-backup-web-check.timer; rename one (a name ending in -check, -notify collides with the extra jobs '
        'of another instance) (rule: unique units)',
        "restic_instances: instances 'web' and 'web-notify' would both own restic-backup-web-notify.service, "
        'restic-backup-web-notify.timer, restic-drill-web-notify.service, restic-drill-web-notify.timer; rename one '
        '(a name ending in -check, -notify collides with the extra jobs of another instance) (rule: unique units)',
    ]


def test_a_name_with_a_suffix_alone_is_fine():
    assert violations('borg', {'web-check': instance(BORG)}) == []


@pytest.mark.parametrize('value, expected', [
    (None, 'restic_instances.app: must be a dict with request and settings, got NoneType (rule: type)'),
    ({'request': None, 'settings': RESTIC},
     'restic_instances.app.request: is required, a dict published by a requester role; got NoneType (rule: type)'),
    ({'settings': RESTIC},
     'restic_instances.app.request: is required, a dict published by a requester role; got NoneType (rule: type)'),
    ({'request': REQUEST, 'settings': 'x'}, 'restic_instances.app.settings: must be a dict, got str (rule: type)'),
    ({'request': REQUEST, 'settings': RESTIC, 'setting': {}},
     'restic_instances.app.setting: unknown key (rule: additionalProperties)'),
])
def test_a_malformed_instance_is_named(value, expected):
    assert violations('restic', {'app': value}) == [expected]


@pytest.mark.parametrize('names', [['UID'], ['EUID', 'PPID'], ['PATH', 'LD_PRELOAD', 'BASH_ENV'], ['LC_ALL'],
                                   ['SELFHOST_BACKUP_X'], ['JOB_USER'], ['SYSTEMD_PAGER']])
def test_secret_variables_the_shell_or_script_own_are_refused_all_at_once(names):
    found = violations('restic', {'app': instance(RESTIC | {'environment_secrets': {name: SECRET for name in names}})})
    assert len(found) == 1
    assert found[0].startswith('restic_instances.app.settings: ')
    for name in names:
        assert f'environment_secrets.{name}' in found[0]


@pytest.mark.parametrize('name', ['RESTIC_PASSWORD_FILE', 'RESTIC_REPOSITORY', 'RESTIC_PASSWORD_COMMAND'])
def test_variables_the_role_sets_are_refused(name):
    assert violations('restic', {'app': instance(RESTIC | {'environment_secrets': {name: SECRET}})}) == [
        f'restic_instances.app.settings: environment_secrets.{name} is set by the role itself; use '
        'repository/passphrase']


def test_backend_secret_variables_pass():
    assert violations('restic', {'app': instance(RESTIC | {'environment_secrets': {
        'AWS_ACCESS_KEY_ID': SECRET, 'AWS_SECRET_ACCESS_KEY': SECRET}})}) == []


@pytest.mark.parametrize('provider, settings', [('restic', RESTIC), ('borg', BORG)])
@pytest.mark.parametrize('value, rule', [(7.0, 'type'), (10 ** 30, 'maximum'), (0, 'minimum'), (True, 'type')])
def test_retention_counts_must_be_sane_integers(provider, settings, value, rule):
    found = violations(provider, {'app': instance(settings | {'retention': {'keep_daily': value}})})
    assert len(found) == 1
    assert found[0].startswith(f'{provider}_instances.app.settings.retention.keep_daily: ')
    assert found[0].endswith(f'(rule: {rule})')


@pytest.mark.parametrize('field, value', [('lock_wait', 10 ** 12), ('lock_wait', 30.0)])
def test_other_integers_are_bounded_too(field, value):
    assert len(violations('restic', {'app': instance(RESTIC | {field: value})})) == 1


@pytest.mark.parametrize('compression', ['zstd,99', 'zstd,0', 'obfuscate,999,lz4', 'obfuscate,7,lz4', 'zlib,10',
                                         'lzma,10', 'auto,zstd,23', 'zstd,3\n'])
def test_borg_compression_levels_borg_refuses_are_refused(compression):
    found = violations('borg', {'app': instance(BORG | {'compression': compression})})
    assert len(found) == 1 and found[0].startswith('borg_instances.app.settings.compression: ')


@pytest.mark.parametrize('compression', ['zstd,22', 'zstd,1', 'obfuscate,3,zstd,3', 'obfuscate,110,lz4',
                                         'obfuscate,123,none', 'auto,zlib,9', 'lzma,0', 'none', 'lz4'])
def test_borg_compression_that_borg_reads_passes(compression):
    assert violations('borg', {'app': instance(BORG | {'compression': compression})}) == []


def test_borg_remote_repository_rules_run_before_any_host():
    remote = {'repository': {'url': 'ssh://borg@borg-server/./app'}, 'passphrase': SECRET}
    assert violations('borg', {'app': instance(remote)}) == [
        'borg_instances.app.settings.ssh: is required (rule: required)']
    assert violations('borg', {'app': instance(remote | {'ssh': {'known_hosts': KNOWN_HOSTS}})}) == []
    other = KNOWN_HOSTS.replace('borg-server', 'elsewhere', 1)
    assert 'does not name the server borg-server' in violations(
        'borg', {'app': instance(remote | {'ssh': {'known_hosts': other}})})[0]


def test_borg_check_options_that_exclude_each_other():
    check = {'enabled': True, 'verify_data': True, 'max_duration': 60}
    found = violations('borg', {'app': instance(BORG | {'check': check})})
    assert found == ['borg_instances.app.settings.check.max_duration: give check.max_duration or check.verify_data, '
                     'not both (rule: not)']


def test_every_violation_of_every_instance_at_once():
    found = violations('restic', {
        'a': instance(RESTIC | {'retention': {'keep_daily': 7.0}}),
        'b': instance(RESTIC, request={'backup_cmd': 'x'}),
        'c\n': instance(RESTIC),
    })
    assert [text.split(':')[0] for text in found] == [
        "restic_instances['c\\n']", 'restic_instances.a.settings.retention.keep_daily',
        'restic_instances.b.request.restore_cmd']


def test_an_unknown_provider_is_a_contract_error():
    with pytest.raises(_contract.ContractError):
        _instances.check('kopia', {}, 'db1')


def test_unit_names_cover_the_extra_jobs_and_the_script():
    assert _instances.unit_names('borg', 'app') == {
        'borg-backup-app.service', 'borg-backup-app.timer', 'borg-backup-app-check.service',
        'borg-backup-app-check.timer', 'borg-backup-app-notify.service', 'borg-backup-app-notify.timer',
        'borg-drill-app.service', 'borg-drill-app.timer', 'borg-drill-app-notify.service',
        'borg-drill-app-notify.timer', 'borg-restore-app'}


@pytest.mark.parametrize('path', ['/', '/etc', '/usr', '/usr/local/bin', '/var/lib', '/home', '/root', '/opt', '/var',
                                  '/srv', '/tmp'])
def test_a_repository_in_a_system_directory_is_refused(path):
    assert violations('restic', {'app': instance(RESTIC | {'repository': {'path': path}})}) == [
        f"restic_instances.app.settings.repository.path: '{path}' is a system directory or holds one; the converge "
        "would hand it to the request's user (rule: not a system directory)"]


@pytest.mark.parametrize('path', ['/srv/backup/../../etc', '/srv//backup', '/srv/backup/', '/srv/./backup',
                                  '/srv/backup/.'])
def test_a_path_that_is_not_normalised_is_refused(path):
    found = violations('borg', {'app': instance(BORG | {'repository': {'path': path}})})
    assert found == [f"borg_instances.app.settings.repository.path: '{path}' is not a normalised absolute path "
                     '(no //, /./, /../ or trailing /) (rule: normalised path)']


@pytest.mark.parametrize('path, tree', [('/etc/selfhost-backup/restic', '/etc/selfhost-backup'),
                                        ('/var/lib/selfhost-backup/repo', '/var/lib/selfhost-backup'),
                                        ('/proc/self', '/proc'), ('/run/backup', '/run')])
def test_a_path_inside_the_secrets_state_or_kernel_trees_is_refused(path, tree):
    assert violations('restic', {'app': instance(RESTIC | {'repository': {'path': path}})}) == [
        f"restic_instances.app.settings.repository.path: '{path}' is inside {tree}, which no job may write "
        '(rule: not a system directory)']


def test_writable_paths_and_the_metrics_directory_are_checked_too():
    found = violations('restic', {'app': instance(RESTIC | {'writable_paths': ['/var/lib/app', '/usr'],
                                                            'monitoring': {'metrics_directory': '/var/lib'}})})
    assert [text.split(':')[0] for text in found] == ['restic_instances.app.settings.monitoring.metrics_directory',
                                                      'restic_instances.app.settings.writable_paths[1]']


@pytest.mark.parametrize('path', ['/srv/backup/app', '/var/lib/postgresql/backup', '/home/app/repository',
                                  '/mnt/disk/restic', '/var/backups/db'])
def test_ordinary_repository_paths_pass(path):
    assert violations('restic', {'app': instance(RESTIC | {'repository': {'path': path}})}) == []


@pytest.mark.parametrize('provider, settings', [('restic', RESTIC), ('borg', BORG)])
@pytest.mark.parametrize('unit', ['--now.service', '-x.service', 'app.service\n', 'a b.service'])
def test_a_stop_unit_that_systemctl_would_read_as_an_option_is_refused(provider, settings, unit):
    found = violations(provider, {'app': instance(settings | {'restore': {'stop_units': [unit]}})})
    assert len(found) == 1 and found[0].startswith(f'{provider}_instances.app.settings.restore.stop_units[0]: ')


@pytest.mark.parametrize('unit', ['postgresql@15-main.service', 'app.service', 'nginx.socket', r'x\x2dy.service'])
def test_ordinary_stop_units_pass(unit):
    assert violations('restic', {'app': instance(RESTIC | {'restore': {'stop_units': [unit]}})}) == []


@pytest.mark.parametrize('settings, field', [
    ({'repository': f'rest:https://user:{SECRET}@host/', 'passphrase': 'x'}, 'repository'),
    (RESTIC | {'environment_secrets': f'AWS_SECRET_ACCESS_KEY={SECRET}'}, 'environment_secrets'),
    (RESTIC | {'environment_secrets': [SECRET]}, 'environment_secrets'),
    (RESTIC | {'monitoring': f'https://hc-ping.com/{SECRET}'}, 'monitoring'),
])
def test_a_wrongly_typed_value_that_may_hold_a_secret_is_never_quoted(settings, field):
    found = violations('restic', {'app': instance(settings)})
    assert f'restic_instances.app.settings.{field}: is not of type ' in '\n'.join(found)


def test_a_non_string_secret_variable_name_is_named_not_a_crash():
    found = violations('restic', {'app': instance(RESTIC | {'environment_secrets': {123: SECRET}})})
    assert found == ['restic_instances.app.settings: environment_secrets: names must be strings, got 123']


@pytest.mark.parametrize('name', ['FUNCNEST', 'EXECIGNORE', 'GCONV_PATH', 'LOCPATH'])
def test_more_variables_that_break_the_job_are_refused(name):
    assert len(violations('restic', {'app': instance(RESTIC | {'environment_secrets': {name: SECRET}})})) == 1


@pytest.mark.parametrize('path', ['/var/run/x', '/var/lock/x', '/etc/ssh', '/etc/systemd/system-generators',
                                  '/usr/local/lib/python3.11/dist-packages', '/lib/systemd/system-generators',
                                  '/etc/selfhost-backupx', '/etc/cron.d'])
def test_trees_root_reads_or_runs_are_refused(path):
    found = violations('restic', {'app': instance(RESTIC | {'repository': {'path': path}})})
    assert len(found) == 1 and '(rule: not a system directory)' in found[0]


def test_a_repository_inside_another_and_metrics_inside_a_repository_are_refused():
    found = violations('restic', {
        'outer': instance(RESTIC | {'repository': {'path': '/srv/b/pg'}}),
        'inner': instance(RESTIC | {'repository': {'path': '/srv/b/pg/my'},
                                    'monitoring': {'metrics_directory': '/srv/b/pg/metrics'}}),
    })
    assert found == [
        "restic_instances.inner.settings.repository.path: '/srv/b/pg/my' is inside the repository of instance "
        "'outer' ('/srv/b/pg') (rule: no nested repositories)",
        "restic_instances.inner.settings.monitoring.metrics_directory: '/srv/b/pg/metrics' is inside the repository "
        "of instance 'outer', which its user owns (rule: root-only metrics)",
    ]


def test_sibling_repositories_and_a_shared_one_pass():
    assert violations('restic', {
        'a': instance(RESTIC | {'repository': {'path': '/srv/b/pg'}}),
        'b': instance(RESTIC | {'repository': {'path': '/srv/b/pg2'}}),
        'c': instance(RESTIC | {'repository': {'path': '/srv/b/pg'}}),
    }) == []


@pytest.mark.parametrize('provider, settings', [('restic', RESTIC), ('borg', BORG)])
def test_a_timeout_systemd_would_ignore_is_refused(provider, settings):
    # systemd-analyze verify only warns about TimeoutStartSec=10^30 and the unit then runs without a timeout.
    found = violations(provider, {'app': instance(settings | {'limits': {'timeout': 10 ** 30}})})
    assert len(found) == 1 and found[0].startswith(f'{provider}_instances.app.settings.limits.timeout: ')


def test_a_local_repository_of_two_users_is_refused_before_any_host():
    shared = {'repository': {'path': '/srv/r'}, 'passphrase': 'pw'}
    found = violations('restic', {
        'pg': instance(shared), 'maria': instance(shared, dict(REQUEST, user='mysql')),
        'pg2': instance(shared), 'off': instance(dict(shared, enable=False), dict(REQUEST, user='nobody'))})
    assert found == ['restic_instances: the local repository /srv/r is shared by instances whose requests run as '
                     'different users (maria: user mysql, pg: user postgres, pg2: user postgres), which cannot all '
                     'own it; give each user its own repository.path (rule: one user per repository)']
    # One user in one repository is fine, and so is a disabled instance of another user.
    assert violations('restic', {'pg': instance(shared), 'pg2': instance(shared)}) == []


@pytest.mark.parametrize('provider, settings', [('restic', RESTIC), ('borg', BORG)])
def test_only_enabled_instances_may_be_reinitialised(provider, settings):
    instances = {'app': instance(settings), 'old': instance(settings | {'enable': False})}
    assert _instances.check(provider, instances, 'db1', reinitialise=['app']).violations == []
    assert _instances.check(provider, instances, 'db1', reinitialise=['ap', 'old']).violations == [
        f'{provider}_reinitialise_repositories: ap is not an enabled instance of {provider}_instances',
        f'{provider}_reinitialise_repositories: old is not an enabled instance of {provider}_instances',
    ]
    assert _instances.check(provider, instances, 'db1', reinitialise='app').violations == [
        f"{provider}_reinitialise_repositories: must be a list of instance names, got 'app' (rule: type)"]


def test_an_invalid_instance_is_not_also_reported_as_unknown_to_reinitialise():
    checked = _instances.check('restic', {'app': instance({'passphrase': SECRET})}, 'db1', reinitialise=['app'])
    assert checked.violations and not any('reinitialise' in text for text in checked.violations)


DRILL_REQUEST = dict(REQUEST, drill_cmd='/usr/local/libexec/drill "it\'s" $x')


@pytest.mark.parametrize('provider, settings', [('restic', RESTIC), ('borg', BORG)])
def test_an_enabled_drill_needs_the_request_s_drill_cmd(provider, settings):
    found = violations(provider, {'app': instance(settings | {'drill': {'enabled': True}})})
    assert found == [
        f'{provider}_instances.app.request.drill_cmd: is required while settings.drill.enabled is true (the drill '
        'streams the dump into it); use a requester that publishes drill_cmd, or set drill.enabled: false '
        '(rule: drill needs drill_cmd)']
    # The alias of the request counts; a drill that is not enabled needs nothing.
    aliased = dict(REQUEST, drillCmd='drill')
    assert violations(provider, {'app': instance(settings | {'drill': {'enabled': True}}, aliased)}) == []
    assert violations(provider, {'app': instance(settings | {'drill': {'enabled': False}})}) == []
    assert violations(provider, {'app': instance(settings)}) == []


def test_the_drill_calendar_is_checked_only_while_the_drill_is_enabled():
    checked = _instances.check('borg', {
        'app': instance(BORG | {'drill': {'enabled': True, 'on_calendar': 'Mon 06:00'}}, DRILL_REQUEST),
        'off': instance(BORG | {'repository': {'path': '/srv/borg/off'}, 'drill': {'on_calendar': 'Tue 06:00'}}),
    }, 'db1')
    assert checked.violations == []
    assert checked.calendars == {
        'daily': ['borg_instances.app.settings.schedule.on_calendar', 'borg_instances.off.settings.schedule.on_calendar'],
        'Mon 06:00': ['borg_instances.app.settings.drill.on_calendar'],
    }
    assert checked.instances['app']['settings']['drill'] == {
        'enabled': True, 'on_calendar': 'Mon 06:00', 'randomized_delay_sec': 3600, 'timeout': 43200}
    assert checked.instances['off']['settings']['drill']['enabled'] is False


def test_an_instance_whose_name_makes_another_s_drill_notification_collides():
    # web's drill has the notification restic-drill-web-notify.service: the drill of an instance web-notify.
    found = violations('restic', {'web': instance(RESTIC), 'web-notify': instance(RESTIC)})
    assert len(found) == 1 and 'restic-drill-web-notify.service' in found[0]
