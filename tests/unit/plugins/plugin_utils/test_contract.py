# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _job_options, _job_script, _layout
from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

VALID = {'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql -v ON_ERROR_STOP=1 postgres'}
NAME_PATTERN = "'^[A-Za-z0-9_][A-Za-z0-9._-]*$'"
USER_PATTERN = "'^[a-z_][a-z0-9_-]*[$]?$'"


def request(**changes):
    document = dict(VALID)
    document.update(changes)
    return {key: value for key, value in document.items() if value is not _DROP}


_DROP = object()


def violations_of(document, name=None):
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_request(document, name)
    return info.value.violations


@pytest.mark.parametrize('document, expected', [
    (VALID, {'user': 'root', 'backup_name': 'dump', **VALID}),
    (request(user='postgres'), {'user': 'postgres', 'backup_name': 'dump', **VALID}),
    (request(user='_mysql'), {'user': '_mysql', 'backup_name': 'dump', **VALID}),
    (request(user='host-backup$'), {'user': 'host-backup$', 'backup_name': 'dump', **VALID}),
    (request(user='u' * 32), {'user': 'u' * 32, 'backup_name': 'dump', **VALID}),
    (request(backup_name='postgresql.sql'), {'user': 'root', 'backup_name': 'postgresql.sql', **VALID}),
    (request(backup_name='_x.tar.gz'), {'user': 'root', 'backup_name': '_x.tar.gz', **VALID}),
    (request(backup_name='n' * 128), {'user': 'root', 'backup_name': 'n' * 128, **VALID}),
    (request(backup_cmd='pg_dumpall |\n gzip'), {'user': 'root', 'backup_name': 'dump', **request(backup_cmd='pg_dumpall |\n gzip')}),
    # drill_cmd is optional: absent above, kept as given here.
    (request(drill_cmd="helper drill --check db 'SELECT 1'"),
     {'user': 'root', 'backup_name': 'dump', **VALID, 'drill_cmd': "helper drill --check db 'SELECT 1'"}),
    # drill_space is optional; given, its absent numbers come back as the plain dump's (factor 1, base 0).
    (request(drill_space={'factor': 3, 'base_bytes': 134217728}),
     {'user': 'root', 'backup_name': 'dump', **VALID, 'drill_space': {'factor': 3, 'base_bytes': 134217728}}),
    (request(drillSpace={'base_bytes': 5}),
     {'user': 'root', 'backup_name': 'dump', **VALID, 'drill_space': {'factor': 1, 'base_bytes': 5}}),
    (request(drill_space={}), {'user': 'root', 'backup_name': 'dump', **VALID, 'drill_space': {'factor': 1, 'base_bytes': 0}}),
    # restore_checks_names is optional and has no default: absent above (the restore script then never asks the
    # request's commands before the restore), kept as given here, under its camelCase alias too.
    (request(restore_into_cmd='into', restore_checks_names=True),
     {'user': 'root', 'backup_name': 'dump', **VALID, 'restore_into_cmd': 'into', 'restore_checks_names': True}),
    (request(restoreDatabaseCmd='db', restoreChecksNames=False),
     {'user': 'root', 'backup_name': 'dump', **VALID, 'restore_database_cmd': 'db', 'restore_checks_names': False}),
])
def test_valid_requests_come_back_with_defaults(document, expected):
    assert _contract.validate_request(document) == expected


def test_validation_does_not_modify_the_callers_document():
    document = {'backupCmd': 'a', 'restoreCmd': 'b'}
    _contract.validate_request(document)
    assert document == {'backupCmd': 'a', 'restoreCmd': 'b'}


INVALID = [
    # (id, document, path, rule, words the message must contain)
    ('no-backup-cmd', request(backup_cmd=_DROP), 'request.backup_cmd', 'required', 'is required'),
    ('no-restore-cmd', request(restore_cmd=_DROP), 'request.restore_cmd', 'required', 'is required'),
    ('empty-backup-cmd', request(backup_cmd=''), 'request.backup_cmd', 'pattern', "'' does not match"),
    ('blank-backup-cmd', request(backup_cmd='   '), 'request.backup_cmd', 'pattern', r"'\\S'"),
    ('whitespace-backup-cmd', request(backup_cmd='\n\t'), 'request.backup_cmd', 'pattern', 'does not match'),
    ('empty-restore-cmd', request(restore_cmd=''), 'request.restore_cmd', 'pattern', 'does not match'),
    ('blank-restore-cmd', request(restore_cmd=' \r\n '), 'request.restore_cmd', 'pattern', 'does not match'),
    ('int-backup-cmd', request(backup_cmd=5), 'request.backup_cmd', 'type', "5 is not of type 'string'"),
    ('null-backup-cmd', request(backup_cmd=None), 'request.backup_cmd', 'type', "None is not of type 'string'"),
    ('list-backup-cmd', request(backup_cmd=['pg_dump']), 'request.backup_cmd', 'type', "is not of type 'string'"),
    ('dict-restore-cmd', request(restore_cmd={'a': 1}), 'request.restore_cmd', 'type', "is not of type 'string'"),
    ('bool-restore-cmd', request(restore_cmd=True), 'request.restore_cmd', 'type', "True is not of type 'string'"),
    ('empty-drill-cmd', request(drill_cmd=''), 'request.drill_cmd', 'pattern', "'' does not match"),
    ('blank-drill-cmd', request(drill_cmd=' \n\t'), 'request.drill_cmd', 'pattern', 'does not match'),
    ('null-drill-cmd', request(drill_cmd=None), 'request.drill_cmd', 'type', "None is not of type 'string'"),
    ('list-drill-cmd', request(drill_cmd=['drill']), 'request.drill_cmd', 'type', "is not of type 'string'"),
    ('both-drill-cmd', request(drill_cmd='a', drillCmd='b'), 'request.drillCmd', 'x-aliases',
     "'drillCmd' and 'drill_cmd' are the same key"),
    ('zero-drill-factor', request(drill_space={'factor': 0}), 'request.drill_space.factor', 'minimum',
     '0 is less than the minimum of 1'),
    ('float-drill-factor', request(drill_space={'factor': 2.5}), 'request.drill_space.factor', 'type',
     "2.5 is not of type 'integer'"),
    ('negative-drill-base', request(drill_space={'base_bytes': -1}), 'request.drill_space.base_bytes', 'minimum',
     'less than the minimum of 0'),
    ('unknown-drill-space-key', request(drill_space={'ratio': 2}), 'request.drill_space.ratio', 'additionalProperties',
     'unknown key'),
    ('string-checks-names', request(restore_checks_names='yes'), 'request.restore_checks_names', 'type',
     "'yes' is not of type 'boolean'"),
    ('int-checks-names', request(restore_checks_names=1), 'request.restore_checks_names', 'type',
     "1 is not of type 'boolean'"),
    ('null-checks-names', request(restore_checks_names=None), 'request.restore_checks_names', 'type',
     "None is not of type 'boolean'"),
    ('both-checks-names', request(restore_checks_names=True, restoreChecksNames=True), 'request.restoreChecksNames',
     'x-aliases', "'restoreChecksNames' and 'restore_checks_names' are the same key"),
    ('name-traversal', request(backup_name='../x'), 'request.backup_name', 'pattern', f"'../x' does not match {NAME_PATTERN}"),
    ('name-hidden', request(backup_name='.hidden'), 'request.backup_name', 'pattern', "'.hidden' does not match"),
    ('name-option', request(backup_name='-x.sql'), 'request.backup_name', 'pattern', "'-x.sql' does not match"),
    ('name-slash', request(backup_name='a/b'), 'request.backup_name', 'pattern', "'a/b' does not match"),
    ('name-absolute', request(backup_name='/etc/passwd'), 'request.backup_name', 'pattern', 'does not match'),
    ('name-empty', request(backup_name=''), 'request.backup_name', 'pattern', "'' does not match"),
    ('name-space', request(backup_name='a b'), 'request.backup_name', 'pattern', "'a b' does not match"),
    ('name-trailing-newline', request(backup_name='dump\n'), 'request.backup_name', 'pattern', r"'dump\n' does not match"),
    ('name-unicode', request(backup_name='düмp'), 'request.backup_name', 'pattern', 'does not match'),
    ('name-too-long', request(backup_name='n' * 129), 'request.backup_name', 'maxLength', 'is longer than 128 characters'),
    ('name-int', request(backup_name=3), 'request.backup_name', 'type', "3 is not of type 'string'"),
    ('name-null', request(backup_name=None), 'request.backup_name', 'type', "None is not of type 'string'"),
    ('user-upper', request(user='Root'), 'request.user', 'pattern', f"'Root' does not match {USER_PATTERN}"),
    ('user-digit-first', request(user='1db'), 'request.user', 'pattern', "'1db' does not match"),
    ('user-empty', request(user=''), 'request.user', 'pattern', "'' does not match"),
    ('user-space', request(user='post gres'), 'request.user', 'pattern', 'does not match'),
    ('user-too-long', request(user='u' * 33), 'request.user', 'maxLength', 'is longer than 32 characters'),
    ('user-int', request(user=0), 'request.user', 'type', "0 is not of type 'string'"),
    ('user-trailing-newline', request(user='root\n'), 'request.user', 'pattern', 'does not match'),
    ('user-dollar-inside', request(user='a$b'), 'request.user', 'pattern', "'a$b' does not match"),
    ('unknown-key', request(foo=1), 'request.foo', 'additionalProperties', 'unknown key'),
    ('typo-key', request(backup_comand='x'), 'request.backup_comand', 'additionalProperties', 'unknown key'),
    ('seed-result-key-in-request', request(backupService='x.service'), 'request.backupService', 'additionalProperties', 'unknown key'),
    ('both-spellings', request(backupCmd='other'), 'request.backupCmd', 'x-aliases', "'backupCmd' and 'backup_cmd'"),
    ('both-name-spellings', request(backupName='x', backup_name='y'), 'request.backupName', 'x-aliases', 'give only'),
]


@pytest.mark.parametrize('document, path, rule, words', [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_request_names_field_and_rule(document, path, rule, words):
    violations = violations_of(document)
    assert len(violations) == 1, violations
    assert violations[0].startswith(f'{path}: ')
    assert violations[0].endswith(f'(rule: {rule})')
    assert words in violations[0]


def test_invalid_cases_are_distinct():
    assert len(INVALID) >= 30
    assert len({json.dumps(case[1], sort_keys=True, default=str) for case in INVALID}) == len(INVALID)


def test_not_a_dict_is_one_type_violation():
    assert violations_of(['backup_cmd']) == ["request: ['backup_cmd'] is not of type 'object' (rule: type)"]


def test_every_violation_reported_at_once_sorted_by_path():
    document = {'backupCmd': 'a', 'backup_cmd': 'b', 'backup_name': '../x', 'zzz': 1, 'aaa': 2, 'user': 'Root'}
    assert violations_of(document, 'restic_instances.app') == [
        "restic_instances.app.request.aaa: unknown key (rule: additionalProperties)",
        "restic_instances.app.request.backupCmd: 'backupCmd' and 'backup_cmd' are the same key, give only 'backup_cmd' (rule: x-aliases)",
        f"restic_instances.app.request.backup_name: '../x' does not match {NAME_PATTERN} (rule: pattern)",
        "restic_instances.app.request.restore_cmd: is required (rule: required)",
        f"restic_instances.app.request.user: 'Root' does not match {USER_PATTERN} (rule: pattern)",
        "restic_instances.app.request.zzz: unknown key (rule: additionalProperties)",
    ]


def test_camel_case_aliases_are_normalised():
    seed = {'user': 'postgres', 'backupName': 'pg.sql', 'backupCmd': 'pg_dumpall', 'restoreCmd': 'psql'}
    assert _contract.validate_request(seed) == {
        'user': 'postgres', 'backup_name': 'pg.sql', 'backup_cmd': 'pg_dumpall', 'restore_cmd': 'psql',
    }
    assert _contract.validate_request({**seed, 'drillCmd': 'drill'})['drill_cmd'] == 'drill'


def test_defaults_come_from_the_schema():
    schema = _contract.load_contract_schema(_contract.REQUEST_SCHEMA)
    filled = _contract.validate_request(VALID)
    assert filled['user'] == schema['properties']['user']['default'] == 'root'
    assert filled['backup_name'] == schema['properties']['backup_name']['default'] == 'dump'


def test_long_values_are_shortened_in_messages():
    message = violations_of(request(backup_name='/' * 500))[0]
    assert '...' in message and len(message) < 200


@pytest.mark.parametrize('document', [
    {'backup_service': 'restic-backup-app.service', 'restore_script': 'restic-restore-app'},
    {'backupService': 'borg-backup-db@x.service', 'restoreScript': 'borg-restore-db'},
])
def test_valid_results(document):
    assert set(_contract.validate_result(document)) == {'backup_service', 'restore_script'}


@pytest.mark.parametrize('key', ['drill_service', 'drillService'])
def test_a_result_may_name_the_drill_service(key):
    document = {'backup_service': 'restic-backup-app.service', 'restore_script': 'restic-restore-app',
                key: 'restic-drill-app.service'}
    assert _contract.validate_result(document)['drill_service'] == 'restic-drill-app.service'


@pytest.mark.parametrize('document, expected', [
    ({'backup_service': 'restic-backup-app.timer', 'restore_script': 'r'}, 'result.backup_service: '),
    ({'backup_service': 'a.service', 'restore_script': '/usr/local/bin/r'}, 'result.restore_script: '),
    ({'backup_service': 'a.service'}, 'result.restore_script: is required'),
    ({'backup_service': 'a.service', 'restore_script': 'r', 'drill_service': 'restic-drill-app.timer'},
     'result.drill_service: '),
])
def test_invalid_results(document, expected):
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_result(document)
    assert info.value.violations[0].startswith(expected)


SETTINGS_SCHEMA = {
    '$schema': 'https://json-schema.org/draft/2020-12/schema',
    'type': 'object',
    'additionalProperties': False,
    'required': ['passphrase'],
    'properties': {
        'passphrase': {'type': 'string', 'minLength': 8, 'writeOnly': True},
        'repository': {
            'type': 'object',
            'properties': {'path': {'type': 'string', 'default': '/srv/backup'}, 'keep': {'type': 'integer'}},
        },
        'retention': {'type': 'object', 'default': {'daily': 7}},
        'tags': {'type': 'array', 'items': {'type': 'string', 'minLength': 1}},
        'odd key': {'type': 'string'},
    },
}


def test_settings_defaults_fill_nested_objects():
    settings = _contract.validate_settings({'passphrase': 'long enough', 'repository': {}}, SETTINGS_SCHEMA, 'restic_instances.app')
    assert settings == {'passphrase': 'long enough', 'repository': {'path': '/srv/backup'}, 'retention': {'daily': 7}}


def test_settings_violations_hide_write_only_values_and_format_paths():
    settings = {'passphrase': 'hunter2', 'repository': {'keep': 'x'}, 'tags': ['a', ''], 'odd key': 1}
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_settings(settings, SETTINGS_SCHEMA, 'restic_instances.app')
    assert info.value.violations == [
        "restic_instances.app.settings.passphrase: invalid value (hidden: the schema marks it writeOnly) (rule: minLength)",
        "restic_instances.app.settings.repository.keep: 'x' is not of type 'integer' (rule: type)",
        "restic_instances.app.settings.tags[1]: '' is shorter than 1 characters (rule: minLength)",
        "restic_instances.app.settings['odd key']: 1 is not of type 'string' (rule: type)",
    ]
    assert 'hunter2' not in str(info.value)


def test_generic_messages_pass_through():
    schema = {'type': 'object', 'properties': {'mode': {'enum': ['a', 'b']}}}
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_settings({'mode': 'c'}, schema)
    assert info.value.violations == ["settings.mode: 'c' is not one of ['a', 'b'] (rule: enum)"]


def test_pattern_properties_are_not_unknown_keys():
    schema = {'type': 'object', 'additionalProperties': False, 'patternProperties': {'^x-': {}}}
    assert _contract.validate_settings({'x-note': 1}, schema) == {'x-note': 1}
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_settings({'x-note': 1, 'y': 2}, schema)
    assert info.value.violations == ['settings.y: unknown key (rule: additionalProperties)']


@pytest.mark.parametrize('pattern, expected', [
    ('^a$', '^a\\Z'),
    ('^[$]$', '^[$]\\Z'),
    ('^a\\$b$', '^a\\$b\\Z'),
    ('^[a-z]+', '^[a-z]+'),
])
def test_ecma_anchors(pattern, expected):
    assert _contract.ecma_anchors(pattern) == expected


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    (tmp_path / 'restic.json').write_text(json.dumps(SETTINGS_SCHEMA))
    (tmp_path / 'README').write_text('not a schema')
    monkeypatch.setattr(_contract, 'SETTINGS_SCHEMA_DIR', str(tmp_path))
    return tmp_path


def test_provider_schema_is_loaded_by_name(settings_dir):
    assert _contract.load_provider_schema('restic', str(settings_dir)) == SETTINGS_SCHEMA
    assert _contract.known_providers(str(settings_dir)) == ['restic']


@pytest.mark.parametrize('provider', ['borg', '../restic', 'Restic'])
def test_unknown_provider_lists_known_ones(settings_dir, provider):
    with pytest.raises(_contract.ContractError, match=r"Unknown provider .*known providers: restic\)"):
        _contract.load_provider_schema(provider, str(settings_dir))


def test_no_settings_folder_means_no_providers(tmp_path):
    assert _contract.known_providers(str(tmp_path / 'missing')) == []
    with pytest.raises(_contract.ContractError, match='known providers: none'):
        _contract.load_provider_schema('restic', str(tmp_path / 'missing'))


def test_broken_schema_file_is_a_contract_error(tmp_path):
    (tmp_path / 'bad.json').write_text('{not json')
    with pytest.raises(_contract.ContractError, match='Cannot read the JSON schema'):
        _contract.load_schema_file(str(tmp_path / 'bad.json'))


@pytest.mark.parametrize('schema, words', [
    ({'type': 'no-such-type'}, 'is not a valid JSON Schema'),
    (['type', 'object'], 'is not a JSON schema object'),
])
def test_invalid_schemas_are_refused(schema, words):
    with pytest.raises(_contract.ContractError, match=words):
        _contract.check_schema(schema)


def test_shipped_schemas_are_valid_draft_2020_12():
    for name in (_contract.REQUEST_SCHEMA, _contract.RESULT_SCHEMA):
        schema = _contract.load_contract_schema(name)
        assert schema['$schema'] == 'https://json-schema.org/draft/2020-12/schema'


def test_missing_jsonschema_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_contract, 'jsonschema', None)
    monkeypatch.setattr(_contract, 'JSONSCHEMA_IMPORT_ERROR', ImportError('No module named jsonschema'))
    with pytest.raises(_contract.ContractError, match=r'jsonschema \(>= 4.18\) is required on the Ansible controller'):
        _contract.validate_request(VALID)


def test_format_path():
    assert _contract.format_path('', ['a', 0, 'b c']) == "a[0]['b c']"
    assert _contract.format_path('x.request', []) == 'x.request'


def test_x_violation_words_the_rule_without_the_value():
    schema = _contract.load_provider_schema('restic')
    document = {'repository': {'path': '/srv/a', 'url': 'rest:http://u:url-secret@h/'}, 'passphrase': 'pw-secret',
                'passphrase_file': '/etc/p', 'environment_secrets': {'AWS_KEY': 5}}
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_settings(document, schema, 'restic_instances.app')
    text = str(info.value)
    assert 'restic_instances.app.settings.passphrase_file: give either passphrase or passphrase_file, not both' in text
    assert 'restic_instances.app.settings.repository.url: give either repository.path or repository.url' in text
    assert "restic_instances.app.settings.environment_secrets.AWS_KEY: is not of type 'string' (value hidden" in text
    assert 'pw-secret' not in text and 'url-secret' not in text


def test_restic_settings_defaults_and_required():
    schema = _contract.load_provider_schema('restic')
    filled = _contract.validate_settings({'repository': {'url': 'sftp:u@h:/r'}, 'passphrase_file': '/etc/p'}, schema)
    assert filled['enable'] is True and filled['lock_wait'] == 300
    assert filled['schedule'] == {'on_calendar': 'daily', 'randomized_delay_sec': 3600, 'fixed_random_delay': True,
                                  'persistent': True}
    assert filled['restore'] == {'stop_units': []}
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_settings({'repository': {}}, schema)
    assert info.value.violations == ['settings.passphrase: is required (rule: required)',
                                     'settings.repository.path: is required (rule: required)']


@pytest.mark.parametrize('provider', ['restic', 'borg'])
@pytest.mark.parametrize('limits, timeout', [
    (None, 43200),  # no limits at all
    ({'nice': 5}, 43200),  # other limits only
    ({'timeout': 172800}, 172800),  # raised by the user
])
def test_every_job_has_a_run_timeout_by_default(provider, limits, timeout):
    """A run that hangs (a full disk under restic 0.17/0.18, a dump that never ends) is stopped and fails by
    default: the jobs' TimeoutStartSec= comes from limits.timeout, which always has a value."""
    schema = _contract.load_provider_schema(provider)
    given = {'repository': {'path': '/srv/r'}, 'passphrase': 'pw'}
    if limits is not None:
        given['limits'] = limits
    filled = _contract.validate_settings(given, schema)
    assert filled['limits']['timeout'] == timeout
    assert filled['limits'] == {**(limits or {}), 'timeout': timeout}
    spec = _job_script.ScriptSpec(layout=_layout.Layout(provider, 'app'), user='root', backup_name='dump',
                                  backup_cmd='true', restore_cmd='cat', credentials={}, env_names=(), stop_units=(),
                                  provider_data=())
    options = _job_options.job_options_from_settings(spec, filled, '/srv/r', check_enabled=True)
    # One value for the backup and its check job: backup_jobs writes it into both services.
    assert options['timeout_sec'] == timeout


@pytest.mark.parametrize('provider', ['restic', 'borg'])
@pytest.mark.parametrize('passphrase', [' lead', 'trail ', 'two\nlines', '\t', ''])
def test_passphrases_that_a_file_would_change_are_refused(provider, passphrase):
    schema = _contract.load_provider_schema(provider)
    with pytest.raises(_contract.ContractViolation) as info:
        _contract.validate_settings({'repository': {'path': '/srv/r'}, 'passphrase': passphrase}, schema)
    assert info.value.violations == [
        'settings.passphrase: must not be empty, start or end with white space, or hold a line break (rule: pattern)']
    schema_ok = _contract.validate_settings({'repository': {'path': '/srv/r'}, 'passphrase': 'in ner 🐢 ok'}, schema)
    assert schema_ok['passphrase'] == 'in ner 🐢 ok'
