# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The attributes of the actions say what runs where: the controller_only fragment claims that nothing runs on the
host, so an action that runs a command or a module there overrides its action and platform attributes."""

from __future__ import annotations

import yaml

from test_module_examples import MODULES, ROOT, module_docs

FRAGMENT = 'selfhost.backup.controller_only'
RUNS_ON_THE_HOST = ('_execute_module(', '_low_level_execute_command(')


def controller_only_modules() -> dict[str, dict]:
    """name -> DOCUMENTATION of the modules that take the controller_only fragment."""
    docs = {path.stem: yaml.safe_load(module_docs(path)['DOCUMENTATION']) for path in MODULES}
    return {name: doc for name, doc in docs.items() if FRAGMENT in doc.get('extends_documentation_fragment', [])}


def test_an_action_that_runs_something_on_the_host_says_so_in_its_own_attributes():
    found = controller_only_modules()
    assert {'provider_instances', 'platform_check', 'provider_plan', 'databasebackup_contract'} <= set(found)
    for name, doc in found.items():
        action = (ROOT / 'plugins' / 'action' / f'{name}.py').read_text()
        if not any(call in action for call in RUNS_ON_THE_HOST):
            continue
        attributes = doc.get('attributes') or {}
        assert {'action', 'platform'} <= set(attributes), name
        assert attributes['platform'].get('platforms') == 'posix', name


def test_provider_instances_names_what_check_host_runs_on_the_host():
    doc = controller_only_modules()['provider_instances']
    said = yaml.safe_dump(doc['attributes']) + yaml.safe_dump(doc['description'])
    assert 'controller only' not in said
    for runs in ('systemd-analyze calendar', 'ansible.builtin.find', 'O(check_host)'):
        assert runs in said, runs
