# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan of a provider's host steps: what each host module gets, secrets only where a no_log step needs them."""

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _backup_job
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract, _plan

REQUEST = {'user': 'postgres', 'backup_name': 'dump', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql'}
ROOT_ONLY = {'owner': 'root', 'group': 'root', 'mode': '0700'}
REMOTE = {'repository': {'url': 'ssh://borg@srv/srv/borg/r'}, 'ssh': {'known_hosts': 'srv ssh-ed25519 AAAA'}}


def instance(enable=True, user='postgres', provider='restic', **settings):
    values = {'enable': enable, 'repository': {'path': '/srv/b'}, 'passphrase': 'pw-123'}
    values.update(settings)
    # As provider_instances hands them over: the schema's defaults filled in.
    return {'request': dict(REQUEST, user=user),
            'settings': _contract.fill_defaults(values, _contract.load_provider_schema(provider))}


def without_secrets(planned):
    return {key: value for key, value in planned.items() if key not in ('secret_files', 'repository_checks')}


def test_enabled_disabled_results_and_jobs_hold_no_secret():
    planned = _plan.plan('restic', {'app': instance(), 'old': instance(enable=False),
                                    'shop': instance(user='mysql', repository={'path': '/srv/shop'})},
                         'restic 0.14.0', 'h1')
    assert planned['instances'] == ['app', 'old', 'shop']
    assert (planned['enabled'], planned['disabled']) == (['app', 'shop'], ['old'])
    assert planned['users'] == ['mysql', 'postgres'] and planned['pings'] is False
    assert planned['results'] == {
        'app': {'backup_service': 'restic-backup-app.service', 'restore_script': 'restic-restore-app'},
        'shop': {'backup_service': 'restic-backup-shop.service', 'restore_script': 'restic-restore-shop'}}
    assert [job['name'] for job in planned['backup_jobs']['jobs']] == ['restic-backup-app', 'restic-backup-shop']
    assert 'pw-123' not in str(without_secrets(planned))
    assert {'dest': '/etc/selfhost-backup/restic/app/passphrase', 'content': 'pw-123'} in planned['secret_files']
    assert not any('/old/' in item['dest'] for item in planned['secret_files'])


def test_job_paths_parents_first_then_repositories_then_secrets():
    planned = _plan.plan('restic', {
        'app': instance(monitoring={'ping_url': 'https://hc/x'}),
        'app2': instance(),
        'remote': instance(repository={'url': 'rest:http://h:8000/x/'}),
        'shop': instance(user='mysql', repository={'path': '/srv/shop'}),
    }, 'restic 0.18.0', 'h1')
    assert planned['job_paths']['directories'] == [
        # the shared parent once, without owner or mode: created when missing, else left alone
        {'path': '/srv'},
        {'path': '/srv/b', 'owner': 'postgres', 'mode': '0700'},
        {'path': '/srv/shop', 'owner': 'mysql', 'mode': '0700'},
        {'path': '/etc/selfhost-backup'} | ROOT_ONLY,
        {'path': '/etc/selfhost-backup/restic'} | ROOT_ONLY,
    ] + [{'path': f'/etc/selfhost-backup/restic/{name}'} | ROOT_ONLY for name in ('app', 'app2', 'remote', 'shop')]
    prune = planned['job_paths']['prune']
    assert prune['directories'] == [f'/etc/selfhost-backup/restic/{name}' for name in ('app', 'app2', 'remote', 'shop')]
    assert '/etc/selfhost-backup/restic/app/ping_url' in prune['keep'] and planned['pings'] is True
    assert '/etc/selfhost-backup/restic/remote/env.RESTIC_REPOSITORY' in prune['keep']
    # after the jobs: every other instance's secrets directory goes
    assert planned['gone_secrets'] == {
        'directories': [{'path': f'/etc/selfhost-backup/restic/{name}'} for name in ('app', 'app2', 'remote', 'shop')],
        'prune': {'subdirectories_of': ['/etc/selfhost-backup/restic']}}


def test_without_enabled_instances_the_secrets_root_is_still_made():
    planned = _plan.plan('borg', {'old': instance(enable=False, provider='borg')}, 'borg 1.4.0', 'h1')
    assert [entry['path'] for entry in planned['job_paths']['directories']] == [
        '/etc/selfhost-backup', '/etc/selfhost-backup/borg']
    assert planned['job_paths']['prune'] == {'directories': [], 'keep': []}
    assert planned['gone_secrets'] == {'directories': [], 'prune': {'subdirectories_of': ['/etc/selfhost-backup/borg']}}
    assert planned['backup_jobs'] == {'jobs': [], 'prune': ['borg-backup-', 'borg-drill-']}
    assert planned['backup_jobs']['jobs'] == [] and planned['repository_checks'] == [] and planned['results'] == {}


def test_restic_checks_carry_the_secrets_about_to_be_written_and_init_holds_paths_only():
    remote = instance(repository={'url': 'rest:http://u:restpw@h:8000/x/'}, passphrase=None,
                      passphrase_file='/etc/pass', environment_secrets={'AWS_SECRET_ACCESS_KEY': 'aws-1'})
    del remote['settings']['passphrase']
    planned = _plan.plan('restic', {'app': instance(), 'old': instance(enable=False), 'remote': remote},
                         'restic 0.18.0', 'h1', reinitialise=['remote'])
    assert planned['repository_checks'] == [
        {'name': 'app', 'user': 'postgres', 'password_file': '/etc/selfhost-backup/restic/app/passphrase',
         'environment_files': {}, 'environment': {}, 'repository': '/srv/b', 'reinitialise': False,
         'passphrase': 'pw-123'},
        # A passphrase file already on the host: the module reads it there.
        {'name': 'remote', 'user': 'postgres', 'password_file': '/etc/pass', 'environment_files': {},
         'environment': {'AWS_SECRET_ACCESS_KEY': 'aws-1', 'RESTIC_REPOSITORY': 'rest:http://u:restpw@h:8000/x/'},
         'reinitialise': True},
    ]
    reinitialised = [(item['name'], item['reinitialise']) for item in planned['repositories']]
    assert reinitialised == [('app', False), ('remote', True)]
    assert planned['repositories'][1]['environment_files'] == {
        'AWS_SECRET_ACCESS_KEY': '/etc/selfhost-backup/restic/remote/env.AWS_SECRET_ACCESS_KEY',
        'RESTIC_REPOSITORY': '/etc/selfhost-backup/restic/remote/env.RESTIC_REPOSITORY'}
    for secret in ('pw-123', 'restpw', 'aws-1'):
        assert secret not in str(planned['repositories']) and secret not in str(planned['backup_jobs']['jobs'])


def test_restic_checks_and_init_trust_the_ca_of_settings_cacert():
    tls = instance(repository={'url': 'rest:https://u:restpw@h:8000/x/'}, cacert='/etc/ssl/ca.pem')
    planned = _plan.plan('restic', {'app': instance(), 'tls': tls}, 'restic 0.18.0', 'h1')
    assert [check.get('cacert') for check in planned['repository_checks']] == [None, '/etc/ssl/ca.pem']
    assert [item.get('cacert') for item in planned['repositories']] == [None, '/etc/ssl/ca.pem']


def test_backup_timers_keep_their_random_delay_by_default():
    planned = _plan.plan('restic', {'app': instance(), 'moving': instance(schedule={'fixed_random_delay': False})},
                         'restic 0.18.0', 'h1')
    jobs = {job['name']: job for job in planned['backup_jobs']['jobs']}
    assert (jobs['restic-backup-app']['fixed_random_delay'], jobs['restic-backup-app']['randomized_delay_sec']) == (
        True, 3600)
    assert jobs['restic-backup-moving']['fixed_random_delay'] is False


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_every_timer_of_an_instance_is_spread_by_default(provider):
    """What the fleet scenario reads from systemd (extensions/molecule/fleet/tests/test_schedule.py), from the unit
    files themselves: with the check and the drill enabled and nothing else said about schedules, every timer of the
    instance (backup, check, drill) has RandomizedDelaySec=3600 with FixedRandomDelay=true, each kind at its own
    default calendar time; fixed_random_delay: false takes the fixed delay from every one of them."""
    def timers(**settings):
        spread = instance(provider=provider, repository={'path': '/srv/b'}, check={'enabled': True},
                          drill={'enabled': True}, **settings)
        spread['request']['drill_cmd'] = 'drill-it'
        planned = _plan.plan(provider, {'app': spread}, {'restic': 'restic 0.18.0', 'borg': 'borg 1.4.0'}[provider], 'h1')
        files = {}
        for job in planned['backup_jobs']['jobs']:
            params = {key: spec.get('default') for key, spec in _backup_job.JOB_SPEC.items()} | job | {
                'unit_dir': '/etc/systemd/system', 'script_dir': '/usr/local/bin'}
            params['extra_jobs'] = [{'description': None, 'user': None} | extra for extra in params['extra_jobs']]
            files.update({item.path: item.content for item in _backup_job.build_job(params).files})
        return {path.rsplit('/', 1)[1]: content for path, content in files.items() if path.endswith('.timer')}

    rendered = timers()
    assert sorted(rendered) == sorted([f'{provider}-backup-app.timer', f'{provider}-backup-app-check.timer',
                                       f'{provider}-drill-app.timer'])
    calendars = {}
    for name, content in rendered.items():
        assert 'RandomizedDelaySec=3600\n' in content and 'FixedRandomDelay=true\n' in content, (name, content)
        calendars[name] = content.split('OnCalendar=', 1)[1].split('\n', 1)[0]
    assert calendars == {f'{provider}-backup-app.timer': 'daily', f'{provider}-backup-app-check.timer': 'Sun *-*-* 04:00:00',
                         f'{provider}-drill-app.timer': 'Wed *-*-* 05:30:00'}
    moving = timers(schedule={'fixed_random_delay': False})
    assert not any('FixedRandomDelay' in content for content in moving.values())
    assert all('RandomizedDelaySec=3600\n' in content for content in moving.values())


def test_borg_checks_ssh_keys_and_pinned_host_keys():
    remote = instance(passphrase=None, passphrase_file='/root/pw', provider='borg', **REMOTE)
    del remote['settings']['passphrase']
    planned = _plan.plan('borg', {'app': instance(provider='borg'), 'old': instance(enable=False, provider='borg'),
                                  'r': remote}, 'borg 1.2.4', 'db1',
                         reinitialise=['r'])
    assert planned['repository_checks'] == [
        {'name': 'app', 'user': 'postgres', 'repository': '/srv/b',
         'marker': '/var/cache/borg-backup-app/selfhost-backup-initialised',
         'password_file': '/etc/selfhost-backup/borg/app/passphrase', 'reinitialise': False, 'passphrase': 'pw-123'},
        # The passphrase file already on the host: the module reads it there.
        {'name': 'r', 'user': 'postgres', 'repository': 'ssh://borg@srv/srv/borg/r',
         'marker': '/var/cache/borg-backup-r/selfhost-backup-initialised', 'password_file': '/root/pw',
         'reinitialise': True, 'ssh_key': '/etc/selfhost-backup/borg/r/ssh_key', 'known_hosts': 'srv ssh-ed25519 AAAA\n'},
    ]
    assert planned['ssh_keys'] == [{'name': 'r', 'path': '/etc/selfhost-backup/borg/r/ssh_key',
                                    'comment': 'borg-backup-r', 'serve_path': '/srv/borg/r'}]
    assert planned['secret_files'] == [
        {'dest': '/etc/selfhost-backup/borg/app/passphrase', 'content': 'pw-123'},
        {'dest': '/etc/selfhost-backup/borg/r/known_hosts', 'content': 'srv ssh-ed25519 AAAA\n'}]
    # The public half of the key is no credential, but stays when the secrets are pruned.
    assert '/etc/selfhost-backup/borg/r/ssh_key.pub' in planned['job_paths']['prune']['keep']
    assert planned['repositories'] == []


def test_the_backup_jobs_keep_only_the_options_of_a_job():
    planned = _plan.plan('borg', {'app': instance(provider='borg')}, 'borg 1.4.0', 'db1')
    from ansible_collections.selfhost.backup.plugins.module_utils._backup_job import JOB_SPEC
    assert planned['backup_jobs']['jobs'] and set(planned['backup_jobs']['jobs'][0]) <= set(JOB_SPEC)
    assert planned['backup_jobs']['jobs'][0]['restore_script']['name'] == 'borg-restore-app'


@pytest.mark.parametrize('provider, version, planned_version', [
    ('restic', '', "readonly RESTIC_STDIN_FROM_COMMAND=''"),
    ('restic', 'restic 0.18.0 compiled with go1.22', 'readonly RESTIC_STDIN_FROM_COMMAND=yes'),
    ('borg', '', 'borg 1.2.0'),
])
def test_an_uninstalled_tool_plans_its_oldest_command_lines(provider, version, planned_version):
    planned = _plan.plan(provider, {'app': instance(provider=provider)}, version, 'h1')
    assert planned_version in planned['backup_jobs']['jobs'][0]['restore_script']['content']


@pytest.mark.parametrize('provider, version, message', [
    ('borg', 'borg 1.1.18', 'borg_instances.app.settings: borg 1.1.18 is too old'),
    ('borg', 'garbage', 'cannot read a borg version'),
    ('restic', 'garbage', 'cannot read a restic version'),
    ('kopia', '1.0', 'unknown provider'),
])
def test_what_cannot_be_planned_fails_naming_the_instance(provider, version, message):
    with pytest.raises(_plan.PlanError, match=message):
        _plan.plan(provider, {'app': instance(provider='restic' if provider == 'kopia' else provider)}, version, 'h1')


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_an_enabled_drill_is_a_job_of_its_own_and_a_result(provider):
    version = {'restic': 'restic 0.18.0', 'borg': 'borg 1.4.0'}[provider]
    drilled = instance(provider=provider, drill={'enabled': True, 'on_calendar': 'Thu 05:00', 'timeout': 600},
                       limits={'nice': 10, 'ionice_class': 'idle'}, monitoring={'metrics_directory': '/var/lib/m'})
    drilled['request']['drill_cmd'] = 'drill-it'
    planned = _plan.plan(provider, {'app': drilled, 'plain': instance(provider=provider),
                                    'old': instance(enable=False, provider=provider)}, version, 'h1')
    jobs = {job['name']: job for job in planned['backup_jobs']['jobs']}
    assert sorted(jobs) == [f'{provider}-backup-app', f'{provider}-backup-plain', f'{provider}-drill-app']
    assert planned['backup_jobs']['prune'] == [f'{provider}-backup-', f'{provider}-drill-']
    drill, backup = jobs[f'{provider}-drill-app'], jobs[f'{provider}-backup-app']
    script = f'/usr/local/bin/{provider}-restore-app'
    assert drill['exec_start'] == [['/bin/bash', script, 'drill', 'latest']]
    assert drill['hooks'] == {'finish': [['/bin/bash', script, 'drill-finished']]}
    assert backup['hooks'] == {'start': [['/bin/bash', script, 'started']], 'finish': [['/bin/bash', script, 'finished']]}
    assert (drill['on_calendar'], drill['timeout_sec'], drill['randomized_delay_sec']) == ('Thu 05:00', 600, 3600)
    # The backup's user, scheduling, credentials and cache (the instance lock); the repository only, no restore script.
    for key in ('user', 'nice', 'io_scheduling_class', 'credentials', 'cache_directory', 'persistent'):
        assert drill[key] == backup[key], key
    assert drill['cache_directory'] == f'{provider}-backup-app'
    assert drill['read_write_paths'] == ['/srv/b'] and 'restore_script' not in drill
    assert drill.get('hardening', True) is True and drill['extra_jobs'] == []
    assert set(drill) <= set(__import__('ansible_collections.selfhost.backup.plugins.module_utils._backup_job',
                                        fromlist=['JOB_SPEC']).JOB_SPEC)
    assert planned['results'] == {
        'app': {'backup_service': f'{provider}-backup-app.service', 'restore_script': f'{provider}-restore-app',
                'drill_service': f'{provider}-drill-app.service'},
        'plain': {'backup_service': f'{provider}-backup-plain.service', 'restore_script': f'{provider}-restore-plain'}}
    # The drill's data: the request's drill_cmd, the drill service, the lock wait.
    content = backup['restore_script']['content']
    assert "readonly DRILL_CMD=drill-it" in content
    assert f"readonly DRILL_SERVICE={provider}-drill-app.service" in content and 'readonly LOCK_WAIT=300' in content


def test_a_drill_notifies_like_the_backup_and_a_remote_one_waits_for_the_network():
    drilled = instance(provider='borg', drill={'enabled': True}, monitoring={'on_failure': 'mail root'}, **REMOTE)
    drilled['request']['drill_cmd'] = 'drill-it'
    planned = _plan.plan('borg', {'r': drilled}, 'borg 1.4.0', 'h1')
    drill = planned['backup_jobs']['jobs'][1]
    assert drill['name'] == 'borg-drill-r' and drill['on_calendar'] == 'Wed *-*-* 05:30:00'
    assert drill['on_failure']['exec_start'] == [['/bin/bash', '/usr/local/bin/borg-restore-r', 'notify']]
    assert 'hooks' not in drill and drill['read_write_paths'] == []
    assert drill['wants'] == drill['after'] == ['network-online.target']
