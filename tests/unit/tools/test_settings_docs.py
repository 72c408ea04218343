# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""tests/tools/settings_docs.py: the settings docs come from the schemas, and --check finds every stale part."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOOL = os.path.join(ROOT, 'tests', 'tools', 'settings_docs.py')
_SPEC = importlib.util.spec_from_file_location('settings_docs', TOOL)
settings_docs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(settings_docs)


@pytest.fixture
def checkout(tmp_path):
    """What the tool reads of the checkout: the schemas with their loader, and the roles."""
    shutil.copytree(os.path.join(ROOT, 'plugins', 'plugin_utils'), tmp_path / 'plugins' / 'plugin_utils',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(os.path.join(ROOT, 'roles'), tmp_path / 'roles')
    return tmp_path


def check(root):
    out = io.StringIO()
    return settings_docs.run(str(root), True, out), out.getvalue()


def edit(path, old, new):
    text = path.read_text(encoding='utf-8')
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding='utf-8')


def test_the_checkout_is_current():
    assert check(ROOT) == (0, '')


def test_a_fresh_copy_passes(checkout):
    assert check(checkout) == (0, '')


def test_a_stale_readme_fails_naming_it_and_is_not_written(checkout):
    readme = checkout / 'roles' / 'restic' / 'README.md'
    edit(readme, '| `lock_wait` | int | `300` |', '| `lock_wait` | int | `600` |')
    stale = readme.read_text(encoding='utf-8')
    rc, out = check(checkout)
    assert rc == 1
    assert out.splitlines()[0] == 'stale: roles/restic/README.md (run python tests/tools/settings_docs.py to update it)'
    assert '-| `lock_wait` | int | `600` |' in out and '+| `lock_wait` | int | `300` |' in out
    assert 'roles/borg' not in out
    assert readme.read_text(encoding='utf-8') == stale
    # Without --check the tool writes it, and then it is current.
    written = io.StringIO()
    assert settings_docs.run(str(checkout), False, written) == 0
    assert written.getvalue() == 'updated: roles/restic/README.md\n'
    assert check(checkout) == (0, '')


def test_a_stale_argument_spec_fails_naming_it(checkout):
    spec = checkout / 'roles' / 'borg' / 'meta' / 'argument_specs.yml'
    edit(spec, '        default: repokey-blake2\n', '        default: repokey\n')
    rc, out = check(checkout)
    assert rc == 1
    assert out.splitlines()[0].startswith('stale: roles/borg/meta/argument_specs.yml ')
    assert '-        default: repokey\n+        default: repokey-blake2\n' in out


def test_a_changed_shared_block_makes_both_providers_stale(checkout):
    edit(checkout / 'plugins' / 'plugin_utils' / 'schemas' / 'settings' / '_common.json',
         '"description": "Nice= of the jobs."', '"description": "Nice= of the backup and check jobs."')
    rc, out = check(checkout)
    assert rc == 1
    assert [line for line in out.splitlines() if line.startswith('stale:')] == [
        f'stale: {name} (run python tests/tools/settings_docs.py to update it)' for name in (
            'roles/borg/README.md', 'roles/borg/meta/argument_specs.yml',
            'roles/restic/README.md', 'roles/restic/meta/argument_specs.yml')]
    assert '+| `limits.nice` | int |  | Nice= of the backup and check jobs. From -20 to 19. |' in out


@pytest.mark.parametrize('relative, marker', [
    ('roles/borg/README.md', settings_docs.README_END),
    ('roles/restic/meta/argument_specs.yml', settings_docs.SPEC_BEGIN),
])
def test_a_missing_marker_fails_naming_the_file(checkout, relative, marker):
    edit(checkout / relative, marker + '\n', '')
    rc, out = check(checkout)
    assert rc == 1
    assert out.startswith(f'stale: {relative}: needs one line ')


def test_the_command_line_check_fails_with_the_file_named(checkout):
    edit(checkout / 'roles' / 'restic' / 'README.md', '| `enable` | bool | `true` |', '| `enable` | bool | `false` |')
    done = subprocess.run([sys.executable, TOOL, '--check', '--root', str(checkout)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    assert 'stale: roles/restic/README.md' in done.stdout
    fresh = subprocess.run([sys.executable, TOOL, '--check'], capture_output=True, text=True, check=False)
    assert (fresh.returncode, fresh.stdout) == (0, '')


@pytest.mark.parametrize('old, new, problem', [
    ('restic_package: restic\n', 'restic_package: restic-bin\n',
     "out of sync: roles/restic/meta/argument_specs.yml: the default of restic_package is 'restic', "
     "roles/restic/defaults/main.yml sets 'restic-bin'"),
    ('restic_package: restic\n', 'restic_package: restic\nrestic_extra: 1\n',
     'out of sync: roles/restic/defaults/main.yml: restic_extra is not an option of any entry point in '
     'roles/restic/meta/argument_specs.yml'),
    ('restic_package: restic\n', '',
     "out of sync: roles/restic/defaults/main.yml: does not set restic_package, which "
     "roles/restic/meta/argument_specs.yml documents with the default 'restic'"),
])
def test_defaults_and_argument_specs_must_agree(checkout, old, new, problem):
    edit(checkout / 'roles' / 'restic' / 'defaults' / 'main.yml', old, new)
    assert check(checkout) == (1, problem + '\n')


def test_a_documented_default_the_defaults_do_not_set_is_named(checkout):
    edit(checkout / 'roles' / 'sqlite' / 'meta' / 'argument_specs.yml', '        default: [sqlite3]\n', '')
    assert check(checkout) == (1, 'out of sync: roles/sqlite/meta/argument_specs.yml: sqlite_databasebackup_packages '
                                  "has no default, roles/sqlite/defaults/main.yml sets ['sqlite3']\n")


def test_the_generated_entry_point_documents_every_setting():
    with open(os.path.join(ROOT, 'roles', 'borg', 'meta', 'argument_specs.yml'), encoding='utf-8') as handle:
        options = yaml.safe_load(handle)['argument_specs']['settings']['options']
    assert options['repository']['required'] is True
    assert options['passphrase']['no_log'] is True and options['passphrase']['type'] == 'str'
    assert options['limits']['options']['timeout']['default'] == 43200
    assert options['limits']['options']['ionice_class']['choices'] == ['idle', 'best-effort', 'realtime']
    assert options['writable_paths'] == {
        'description': [options['writable_paths']['description'][0], 'Each item at most 4096 characters.',
                        'No item twice.'],
        'type': 'list', 'elements': 'str', 'default': []}
    assert 'default' not in options['schedule']  # an object with options: they carry the defaults
    assert options['schedule']['options']['on_calendar']['default'] == 'daily'
    assert sorted(options['retention']['options']) == sorted(
        ['keep_last', 'keep_secondly', 'keep_minutely', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly',
         'keep_yearly', 'keep_within'])


def test_readme_cells_escape_pipes():
    schema = {'properties': {'a': {'description': 'x | y', 'type': 'string', 'enum': ['p|q']}},
              'required': ['a']}
    assert settings_docs.readme_table(schema).splitlines()[2] == r'| `a` | str: `p\|q` | required | x \| y |'
