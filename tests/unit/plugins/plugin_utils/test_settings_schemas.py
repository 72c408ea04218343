# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The providers' effective settings schemas keep their rules and defaults now that the shared blocks live once.

``fixtures/settings_<provider>_effective.json`` is ``load_provider_schema(<provider>)`` as it was before the
blocks both providers repeated moved to ``schemas/settings/_common.json``. Every rule, default, secret mark and
the order of the properties (the order of the defaults filled in) must stay as they were; only the descriptions
may change (they are documentation: tests/tools/settings_docs.py writes them into the role READMEs and argument
specs). A change of a shared block shows here as a change of both providers, on purpose: when a rule changes on
purpose, change the fixture in the same commit.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.selfhost.backup.plugins.plugin_utils import _contract

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
PROVIDERS = ['restic', 'borg']


def fixture(provider):
    with open(os.path.join(FIXTURES, f'settings_{provider}_effective.json'), encoding='utf-8') as handle:
        return handle.read()


def dumped(schema):
    return json.dumps(schema, indent=2, ensure_ascii=False) + '\n'


# Keywords whose value maps names to schemas: there a key 'description' would be a setting, not documentation.
NAME_MAPS = ('properties', '$defs', 'dependentSchemas', 'patternProperties')


def rules(schema):
    """The schema without its descriptions, in its own order."""
    if isinstance(schema, list):
        return [rules(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: {name: rules(sub) for name, sub in value.items()} if key in NAME_MAPS and isinstance(value, dict)
            else rules(value) for key, value in schema.items() if key != 'description'}


def test_rules_drops_descriptions_only():
    schema = {'description': 'd', 'properties': {'description': {'description': 'x', 'type': 'string'}}}
    assert rules(schema) == {'properties': {'description': {'type': 'string'}}}


@pytest.mark.parametrize('provider', PROVIDERS)
def test_effective_schema_has_the_rules_of_the_one_before_the_shared_blocks(provider):
    # Text, not dict equality: the order of the properties is the order of the defaults filled in.
    assert dumped(rules(_contract.load_provider_schema(provider))) == dumped(rules(json.loads(fixture(provider))))


@pytest.mark.parametrize('provider', PROVIDERS)
def test_every_setting_is_described(provider):
    undescribed = [path for path, block in property_blocks(_contract.load_provider_schema(provider))
                   if not block.get('description')]
    assert undescribed == []


@pytest.mark.parametrize('provider', PROVIDERS)
def test_defaults_are_the_ones_before_the_shared_blocks(provider):
    before = json.loads(fixture(provider))
    now = _contract.load_provider_schema(provider)
    for given in ({}, {'schedule': {}, 'check': {}, 'limits': {}, 'monitoring': {}, 'restore': {}, 'retention': {}}):
        assert dumped(_contract.fill_defaults(given, now)) == dumped(_contract.fill_defaults(given, before))


SECRET = 'sec-ret-value'
DOCUMENTS = [
    {},
    {'repository': {'path': '/srv/r'}, 'passphrase': 'pw'},
    {'repository': {'path': '/srv/r', 'url': 'no-url'}, 'passphrase': SECRET, 'passphrase_file': '/etc/p'},
    {'repository': {'url': 5}, 'passphrase': 5, 'monitoring': 'https://x/' + SECRET},
    {'repository': {'path': 'relative'}, 'passphrase': ' ' + SECRET, 'enable': 'yes', 'unknown': 1,
     'schedule': {'on_calendar': '', 'randomized_delay_sec': -1, 'persistent': 'no', 'x': 1},
     'writable_paths': ['/a', '/a', 'b'], 'restore': {'stop_units': ['x', '--now.service']},
     'monitoring': {'ping_url': 'ftp://' + SECRET, 'ping_timeout': 0, 'ping_retries': 11, 'late_after': 1.5,
                    'on_failure': 'a\nb', 'metrics_directory': 'rel'},
     'check': {'enabled': 1, 'on_calendar': '\n', 'verify_data': True, 'max_duration': 5, 'read_data_subset': 'x'},
     'limits': {'nice': 20, 'ionice_class': 'fast', 'timeout': 9, 'upload_kib': 0, 'upload_ratelimit': 0},
     'retention': {'keep_last': 0, 'keep_daily': 7.0, 'keep_within': '1x', 'keep_secondly': 1},
     'host': '-bad', 'lock_wait': -1, 'passphrase_file': '/etc/p'},
    {'repository': {'path': '/srv/r'}, 'passphrase_file': '/etc/p', 'environment_secrets': {'lower': SECRET},
     'ssh': {'known_hosts': 'not a key'}, 'encryption': 'none', 'compression': 'gzip'},
    {'repository': {'url': 'sftp:u@h:/r'}, 'passphrase': SECRET, 'environment_secrets': {'B2_KEY': SECRET},
     'host': 'db1', 'schedule': {'on_calendar': 'hourly'}, 'retention': {'keep_daily': 7, 'keep_within': '30d'},
     'check': {'enabled': True, 'read_data_subset': '5%'}, 'limits': {'upload_kib': 10, 'nice': 5},
     'writable_paths': ['/var/lib/app'], 'lock_wait': 0, 'restore': {'stop_units': ['app.service']},
     'monitoring': {'ping_url': 'https://hc/' + SECRET, 'metrics_directory': '/var/lib/prom'}},
    {'repository': {'url': 'ssh://b@h:2222/./r'}, 'passphrase_file': '/etc/p', 'encryption': 'repokey',
     'ssh': {'known_hosts': 'h ssh-ed25519 AAAA'}, 'compression': 'lz4', 'retention': {'keep_secondly': 1},
     'check': {'enabled': True, 'max_duration': 60}, 'limits': {'upload_ratelimit': 10, 'ionice_class': 'idle'}},
]


@pytest.mark.parametrize('provider', PROVIDERS)
@pytest.mark.parametrize('index', range(len(DOCUMENTS)))
def test_validation_says_what_it_said_before_the_shared_blocks(provider, index):
    """The same documents give the same filled settings, or the same violations word for word."""
    def outcome(schema):
        try:
            return _contract.validate_settings(DOCUMENTS[index], schema, f'{provider}_instances.app')
        except _contract.ContractViolation as exc:
            return exc.violations

    now = outcome(_contract.load_provider_schema(provider))
    assert dumped(now) == dumped(outcome(json.loads(fixture(provider))))
    if isinstance(now, list):
        assert now and SECRET not in repr(now)


def raw(name):
    with open(os.path.join(_contract.SETTINGS_SCHEMA_DIR, f'{name}.json'), encoding='utf-8') as handle:
        return json.load(handle)


def test_the_shared_blocks_are_no_provider():
    assert _contract.known_providers() == PROVIDERS[::-1]
    with pytest.raises(_contract.ContractError, match=r"Unknown provider '_common'.*known providers: borg, restic\)"):
        _contract.load_provider_schema(_contract.SHARED_SETTINGS_SCHEMA)


@pytest.mark.parametrize('provider', PROVIDERS)
def test_a_provider_file_passed_as_settings_schema_takes_the_shared_blocks(provider):
    """A user may pass a copy of restic.json as settings_schema: its $refs are resolved as by provider=restic."""
    given = {'repository': {'path': '/srv/r'}, 'passphrase_file': '/etc/p', 'monitoring': {'ping_timeout': 0}}
    with pytest.raises(_contract.ContractViolation) as by_file:
        _contract.validate_settings(given, raw(provider), 'app')
    with pytest.raises(_contract.ContractViolation) as by_name:
        _contract.validate_settings(given, _contract.load_provider_schema(provider), 'app')
    assert by_file.value.violations == by_name.value.violations == [
        'app.settings.monitoring.ping_timeout: 0 is less than the minimum of 1 (rule: minimum)']
    filled = _contract.validate_settings({'repository': {'path': '/srv/r'}, 'passphrase': 'pw'}, raw(provider))
    assert filled['schedule'] == {'on_calendar': 'daily', 'randomized_delay_sec': 3600, 'fixed_random_delay': True,
                                  'persistent': True}


def property_blocks(schema, path=''):
    for key, subschema in schema.get('properties', {}).items():
        yield f'{path}{key}', subschema
        yield from property_blocks(subschema, f'{path}{key}.')


def test_no_settings_block_is_written_twice():
    """What both providers' files say alike belongs in _common.json, so that it cannot drift apart."""
    borg = dict(property_blocks(raw('borg')))
    alike = [path for path, block in property_blocks(raw('restic'))
             if path in borg and borg[path] == block and '$ref' not in block]
    assert alike == []


def refs(node):
    if isinstance(node, dict):
        if isinstance(node.get('$ref'), str):
            yield node['$ref']
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_every_shared_block_is_used():
    used = {ref.rpartition('/')[2] for name in PROVIDERS + ['_common'] for ref in refs(raw(name))}
    assert sorted(raw('_common')['$defs']) == sorted(used)


BASE = {'$id': 'https://selfhost.backup/schemas/settings/x.json', 'type': 'object'}
SHARED = {'$id': 'https://selfhost.backup/schemas/settings/_common.json',
          '$defs': {'word': {'description': 'shared', 'type': 'string', 'maxLength': 3},
                    'pair': {'type': 'object', 'properties': {'a': {'$ref': '#/$defs/word'}}},
                    'loop': {'$ref': '#/$defs/loop'}, 'flag': True}}


@pytest.fixture
def shared_dir(tmp_path):
    (tmp_path / '_common.json').write_text(json.dumps(SHARED))
    return str(tmp_path)


def test_inline_shared_joins_annotations_first_and_resolves_inside_the_block(shared_dir):
    schema = {**BASE, 'properties': {
        'w': {'$ref': '_common.json#/$defs/word', 'description': 'own', '$comment': 'c'},
        'p': {'$ref': 'https://selfhost.backup/schemas/settings/_common.json#/$defs/pair'},
        'local': {'$ref': '#/properties/w'}, 'other': {'$ref': 'https://example.org/s.json'}}}
    inlined = _contract.inline_shared(schema, shared_dir)
    assert list(inlined['properties']['w'].items()) == [
        ('description', 'own'), ('$comment', 'c'), ('type', 'string'), ('maxLength', 3)]
    assert inlined['properties']['p'] == {'type': 'object', 'properties': {'a': SHARED['$defs']['word']}}
    # Refs into the schema itself or into other documents stay for jsonschema.
    assert inlined['properties']['local'] == {'$ref': '#/properties/w'}
    assert inlined['properties']['other'] == {'$ref': 'https://example.org/s.json'}
    assert schema['properties']['w']['$ref'] == '_common.json#/$defs/word'  # the caller's schema is not changed


def test_inline_shared_without_a_ref_reads_no_shared_file(tmp_path):
    schema = {**BASE, 'properties': {'local': {'$ref': '#/$defs/x'}}, '$defs': {'x': {'type': 'string'}}}
    assert _contract.inline_shared(schema, str(tmp_path / 'missing')) == schema


@pytest.mark.parametrize('block, words', [
    ({'$ref': '_common.json#/$defs/word', 'maxLength': 5},
     r"gives maxLength beside the \$ref '_common.json#/\$defs/word': only \$comment, default, description"),
    ({'$ref': '_common.json#/$defs/none'}, r"refers to '_common.json#/\$defs/none', which points at nothing"),
    ({'$ref': '_common.json#/$defs/word/type/x'}, 'which points at nothing'),
    ({'$ref': '_common.json#/$defs/loop'}, 'in a circle'),
    ({'$ref': '_common.json#/$defs/flag'}, 'which is not a schema object'),
])
def test_inline_shared_refuses_a_broken_ref(shared_dir, block, words):
    with pytest.raises(_contract.ContractError, match=words):
        _contract.inline_shared({**BASE, 'properties': {'w': block}}, shared_dir)


def test_inline_shared_leaves_a_ref_where_the_folder_has_no_shared_blocks(tmp_path):
    # A provider outside the collection, loaded from its own folder, is read as it is.
    schema = {**BASE, 'properties': {'w': {'$ref': '_common.json#/$defs/word'}}}
    assert _contract.inline_shared(schema, str(tmp_path)) == schema
