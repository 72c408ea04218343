# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write the providers' settings documentation from their schemas, or check that it is current.

The settings schema of a provider (``plugins/plugin_utils/schemas/settings/<provider>.json``, with the blocks the
providers share inlined) is the one source of the settings' documentation. From it this tool writes

- the settings table of ``roles/<provider>/README.md``, between ``<!-- BEGIN generated settings ... -->`` and
  ``<!-- END generated settings -->``;
- the ``settings`` entry point of ``roles/<provider>/meta/argument_specs.yml`` (between ``# BEGIN generated
  settings ...`` and ``# END generated settings``), so that ``ansible-doc -t role selfhost.backup.<provider>``
  shows every setting with its type, default, choices and description. It only documents: no task file is
  called ``settings``, and the role validates the settings against the schema.

It also checks, without writing anything, that every role's ``defaults/main.yml`` and ``meta/argument_specs.yml``
agree: each default is documented with the same value, and each documented default of the main entry point is set.

usage: python tests/tools/settings_docs.py [--check] [--root DIR]
  --check  write nothing; print a diff of each stale part and exit 1 when one is stale or a role's defaults
           and argument specs disagree.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import sys
import types
import typing as t

import yaml

TOOL = 'tests/tools/settings_docs.py'
ENTRY_POINT = 'settings'
README_BEGIN = f'<!-- BEGIN generated settings: {TOOL} writes this table from the settings schema, do not edit -->'
README_END = '<!-- END generated settings -->'
SPEC_BEGIN = f'  # BEGIN generated settings: {TOOL} writes this entry point from the settings schema, do not edit'
SPEC_END = '  # END generated settings'
# JSON Schema type -> argument spec type
SPEC_TYPES = {'boolean': 'bool', 'integer': 'int', 'number': 'float', 'string': 'str', 'array': 'list',
              'object': 'dict'}
YAML_WIDTH = 110


class Stale(Exception):
    """A file cannot be brought up to date (its markers are missing)."""


def load_contract(root: str) -> types.ModuleType:
    """``plugins/plugin_utils/_contract.py`` of the checkout at ``root``, without an ansible_collections tree."""
    path = os.path.join(root, 'plugins', 'plugin_utils', '_contract.py')
    spec = importlib.util.spec_from_file_location('_selfhost_backup_contract', path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for a checkout without the file
        raise Stale(f'{path}: cannot be imported')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings_providers(root: str, contract: types.ModuleType) -> list[str]:
    """The providers of the collection: a settings schema and a role of the same name."""
    settings_dir = os.path.join(root, 'plugins', 'plugin_utils', 'schemas', 'settings')
    return [name for name in contract.known_providers(settings_dir) if os.path.isdir(os.path.join(root, 'roles', name))]


# ---------------------------------------------------------------------------------------------- the schema, read

def type_of(schema: dict[str, t.Any]) -> str:
    if 'enum' in schema and 'type' not in schema:
        return 'string' if all(isinstance(item, str) for item in schema['enum']) else 'raw'
    return str(schema.get('type', 'raw'))


def rules_of(schema: dict[str, t.Any]) -> list[str]:
    """The bounds of one setting in words, and whether it is a secret: what its description need not say."""
    rules = []
    if 'minimum' in schema and 'maximum' in schema:
        rules.append(f"From {schema['minimum']} to {schema['maximum']}.")
    elif 'minimum' in schema:
        rules.append(f"At least {schema['minimum']}.")
    elif 'maximum' in schema:
        rules.append(f"At most {schema['maximum']}.")
    if 'maxLength' in schema:
        rules.append(f"At most {schema['maxLength']} characters.")
    items = schema.get('items')
    if isinstance(items, dict) and 'maxLength' in items:
        rules.append(f"Each item at most {items['maxLength']} characters.")
    if schema.get('uniqueItems'):
        rules.append('No item twice.')
    if schema.get('writeOnly') or (isinstance(schema.get('additionalProperties'), dict)
                                   and schema['additionalProperties'].get('writeOnly')):
        rules.append('A secret (writeOnly): never quoted in messages.')
    return rules


def settings_of(schema: dict[str, t.Any], prefix: str = '') -> t.Iterator[tuple[str, dict[str, t.Any], bool]]:
    """(dotted key, subschema, required) of every setting, parents before their children, in schema order."""
    required = set(schema.get('required', []))
    for key, subschema in schema.get('properties', {}).items():
        yield prefix + key, subschema, key in required
        yield from settings_of(subschema, f'{prefix}{key}.')


# -------------------------------------------------------------------------------------------- the README table

def _cell(text: str) -> str:
    return text.replace('|', '\\|').replace('\n', ' ')


def _code(value: t.Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f'`{text}`'


def readme_type(schema: dict[str, t.Any]) -> str:
    kind = SPEC_TYPES.get(type_of(schema), 'raw')
    items = schema.get('items')
    if kind == 'list' and isinstance(items, dict):
        kind = f"list of {SPEC_TYPES.get(type_of(items), 'raw')}"
    if 'enum' in schema:
        kind += ': ' + ', '.join(_code(item) for item in schema['enum'])
    return kind


def readme_default(schema: dict[str, t.Any], required: bool) -> str:
    if required:
        return 'required'
    # An object with properties has no default of its own to tell: its properties show theirs.
    if 'default' not in schema or schema.get('properties'):
        return ''
    return _code(schema['default'])


def readme_table(schema: dict[str, t.Any]) -> str:
    rows = ['| key | type | default | meaning |', '| --- | --- | --- | --- |']
    for key, subschema, required in settings_of(schema):
        meaning = ' '.join([subschema.get('description', '')] + rules_of(subschema)).strip()
        rows.append(f'| `{key}` | {_cell(readme_type(subschema))} | {_cell(readme_default(subschema, required))} | '
                    f'{_cell(meaning)} |')
    return '\n'.join(rows) + '\n'


# ------------------------------------------------------------------------------- the argument spec entry point

def spec_option(schema: dict[str, t.Any], required: bool) -> dict[str, t.Any]:
    option: dict[str, t.Any] = {'description': [line for line in [schema.get('description', '')] + rules_of(schema)
                                                if line]}
    kind = type_of(schema)
    option['type'] = SPEC_TYPES.get(kind, 'raw')
    items = schema.get('items')
    if kind == 'array' and isinstance(items, dict):
        option['elements'] = SPEC_TYPES.get(type_of(items), 'raw')
    if required:
        option['required'] = True
    if 'enum' in schema:
        option['choices'] = list(schema['enum'])
    if 'default' in schema and not schema.get('properties'):
        option['default'] = schema['default']
    if schema.get('writeOnly'):
        option['no_log'] = True
    if schema.get('properties'):
        needed = set(schema.get('required', []))
        option['options'] = {key: spec_option(sub, key in needed) for key, sub in schema['properties'].items()}
    return option


def spec_entry_point(provider: str, schema: dict[str, t.Any]) -> dict[str, t.Any]:
    needed = set(schema.get('required', []))
    return {ENTRY_POINT: {
        'short_description': f'The settings of one {provider} instance (documentation only)',
        'description': [
            f'The settings of one instance, C({provider}_instances.<name>.settings), as the schema '
            f'C(plugins/plugin_utils/schemas/settings/{provider}.json) defines them.',
            f'This entry point only documents them (there is no C(tasks_from={ENTRY_POINT})): the main entry point '
            'validates each instance against the schema on the controller, before any host task.',
        ],
        'options': {key: spec_option(sub, key in needed) for key, sub in schema.get('properties', {}).items()},
    }}


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented below their key, as the hand-written argument specs write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def spec_yaml(provider: str, schema: dict[str, t.Any]) -> str:
    text = yaml.dump(spec_entry_point(provider, schema), Dumper=_IndentedDumper, sort_keys=False,
                     allow_unicode=True, width=YAML_WIDTH, default_flow_style=False)
    return ''.join(f'  {line}' if line.strip() else line for line in text.splitlines(keepends=True))


# ------------------------------------------------------------------------------------------ files and markers

def replace_between(path: str, text: str, begin: str, end: str, generated: str) -> str:
    """``text`` with the lines between the marker lines ``begin`` and ``end`` replaced by ``generated``."""
    lines = text.splitlines(keepends=True)
    stripped = [line.rstrip('\n') for line in lines]
    if stripped.count(begin) != 1 or stripped.count(end) != 1 or stripped.index(begin) > stripped.index(end):
        raise Stale(f'{path}: needs one line {begin!r} and, after it, one line {end!r}')
    first, last = stripped.index(begin), stripped.index(end)
    return ''.join(lines[:first + 1]) + generated + ''.join(lines[last:])


def generated_files(root: str) -> dict[str, str]:
    """Each generated file (relative to ``root``) and what it should hold."""
    contract = load_contract(root)
    settings_dir = os.path.join(root, 'plugins', 'plugin_utils', 'schemas', 'settings')
    wanted = {}
    for provider in settings_providers(root, contract):
        schema = contract.load_provider_schema(provider, settings_dir)
        for relative, begin, end, generated in (
            (f'roles/{provider}/README.md', README_BEGIN, README_END, readme_table(schema)),
            (f'roles/{provider}/meta/argument_specs.yml', SPEC_BEGIN, SPEC_END, spec_yaml(provider, schema)),
        ):
            with open(os.path.join(root, relative), encoding='utf-8') as handle:
                wanted[relative] = replace_between(relative, handle.read(), begin, end, generated)
    return wanted


# -------------------------------------------------------------------------------- defaults vs argument specs

def _read_yaml(path: str) -> t.Any:
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def defaults_disagreements(root: str) -> list[str]:
    """Where a role's defaults/main.yml and meta/argument_specs.yml disagree, one message each."""
    problems = []
    roles_dir = os.path.join(root, 'roles')
    for role in sorted(os.listdir(roles_dir)):
        defaults_path = os.path.join(roles_dir, role, 'defaults', 'main.yml')
        specs_path = os.path.join(roles_dir, role, 'meta', 'argument_specs.yml')
        if not os.path.isfile(defaults_path) or not os.path.isfile(specs_path):
            continue
        try:
            defaults = _read_yaml(defaults_path) or {}
            specs = _read_yaml(specs_path) or {}
        except yaml.YAMLError as exc:
            problems.append(f'roles/{role}: cannot read its defaults or argument specs: {exc}')
            continue
        entry_points = {name: point for name, point in specs.get('argument_specs', {}).items() if name != ENTRY_POINT}
        documented: dict[str, dict[str, t.Any]] = {}
        for point in entry_points.values():
            for name, option in (point.get('options') or {}).items():
                documented.setdefault(name, option)
        defaults_file = f'roles/{role}/defaults/main.yml'
        specs_file = f'roles/{role}/meta/argument_specs.yml'
        for name, value in defaults.items():
            if name not in documented:
                problems.append(f'{defaults_file}: {name} is not an option of any entry point in {specs_file}')
            elif 'default' not in documented[name]:
                problems.append(f'{specs_file}: {name} has no default, {defaults_file} sets {value!r}')
            elif documented[name]['default'] != value:
                problems.append(f"{specs_file}: the default of {name} is {documented[name]['default']!r}, "
                                f'{defaults_file} sets {value!r}')
        main_options = (entry_points.get('main') or {}).get('options') or {}
        for name, option in main_options.items():
            if 'default' in option and name not in defaults:
                problems.append(f'{defaults_file}: does not set {name}, which {specs_file} documents with the '
                                f"default {option['default']!r}")
    return problems


# ------------------------------------------------------------------------------------------------------- main

def run(root: str, check: bool, out: t.TextIO) -> int:
    failed = False
    try:
        wanted = generated_files(root)
    except Stale as exc:
        print(f'stale: {exc}', file=out)
        return 1
    for relative, text in wanted.items():
        path = os.path.join(root, relative)
        with open(path, encoding='utf-8') as handle:
            current = handle.read()
        if current == text:
            continue
        if check:
            failed = True
            print(f'stale: {relative} (run python {TOOL} to update it)', file=out)
            out.writelines(difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True),
                                                f'a/{relative}', f'b/{relative}'))
        else:
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(text)
            print(f'updated: {relative}', file=out)
    for problem in defaults_disagreements(root):
        failed = True
        print(f'out of sync: {problem}', file=out)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or '').split('\n\n', maxsplit=1)[0])
    parser.add_argument('--check', action='store_true', help='write nothing; fail with a diff when a part is stale')
    parser.add_argument('--root', default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        help='the collection checkout (default: the one holding this tool)')
    args = parser.parse_args(argv)
    return run(args.root, args.check, sys.stdout)


if __name__ == '__main__':
    sys.exit(main())
