# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every EXAMPLES block of the collection's modules (and filters) is valid: YAML, a list of named tasks, the
collection's modules called with documented options only and every required one, and a playbook made of the tasks
passes ansible-playbook --syntax-check (which resolves every module and filter name)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from ansible_run import ansible_playbook

ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted((ROOT / 'plugins' / 'modules').glob('*.py'))
FILTERS = sorted((ROOT / 'plugins' / 'filter').glob('*.yml'))


def module_docs(path: Path) -> dict[str, str]:
    """DOCUMENTATION, EXAMPLES and RETURN of a module, read without importing it."""
    docs = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value,
                                                                                                 ast.Constant):
            docs[node.targets[0].id] = node.value.value
    return docs


def examples_of(path: Path) -> tuple[list, dict]:
    """The example tasks and the documented options (empty for a filter)."""
    if path.suffix == '.yml':
        return yaml.safe_load(yaml.safe_load(path.read_text())['EXAMPLES']), {}
    docs = module_docs(path)
    return yaml.safe_load(docs['EXAMPLES']), yaml.safe_load(docs['DOCUMENTATION']).get('options') or {}


def check_options(args: dict, options: dict, where: str) -> list[str]:
    """What is wrong with the arguments of one call: undocumented or missing required options, at any depth the
    documentation describes (suboptions of a dict or of a list of dicts). A templated value is not looked into."""
    problems = [f'{where}.{name}: not a documented option' for name in sorted(set(args) - set(options))]
    problems += [f'{where}.{name}: required, missing' for name, spec in sorted(options.items())
                 if spec.get('required') and name not in args]
    for name, spec in sorted(options.items()):
        value = args.get(name)
        if not spec.get('options') or value is None or isinstance(value, str):
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                problems += check_options(item, spec['options'], f'{where}.{name}[{index}]')
    return problems


def test_the_option_check_finds_a_typo_and_a_missing_required_option():
    options = {'jobs': {'type': 'list', 'elements': 'dict', 'required': True, 'options': {
        'name': {'type': 'str', 'required': True}, 'user': {'type': 'str'}}}}
    assert check_options({'jobs': [{'name': 'a'}, {'usr': 'x'}]}, options, 't') == [
        't.jobs[1].usr: not a documented option', 't.jobs[1].name: required, missing']
    assert check_options({}, options, 't') == ['t.jobs: required, missing']
    assert check_options({'jobs': '{{ planned }}'}, options, 't') == []


def test_every_module_has_examples():
    assert [path.stem for path in MODULES if not (examples_of(path)[0])] == []
    assert len(MODULES) >= 8


@pytest.mark.parametrize('path', MODULES + FILTERS, ids=lambda path: path.name)
def test_examples_are_named_tasks_using_documented_options(path):
    tasks, options = examples_of(path)
    assert isinstance(tasks, list) and tasks, path
    fqcn = f'selfhost.backup.{path.stem}'
    calls = 0
    for task in tasks:
        assert isinstance(task, dict) and task.get('name'), task
        if fqcn in task:
            calls += 1
            args = task[fqcn] or {}
            assert isinstance(args, dict), task['name']
            assert check_options(args, options, task['name']) == []
    if path.suffix == '.py':
        assert calls > 0, f'no example calls {fqcn}'
    else:
        assert f'selfhost.backup.{yaml.safe_load(path.read_text())["DOCUMENTATION"]["name"]}' in yaml.safe_dump(tasks)


@pytest.mark.parametrize('path', MODULES + FILTERS, ids=lambda path: path.name)
def test_examples_pass_ansible_playbook_syntax_check(path, tmp_path):
    tasks, dummy = examples_of(path)
    playbook = tmp_path / f'{path.stem}.yml'
    playbook.write_text(yaml.safe_dump([{'name': f'The examples of {path.name}', 'hosts': 'localhost',
                                         'gather_facts': False, 'tasks': tasks}], sort_keys=False))
    run = ansible_playbook('--syntax-check', '-i', 'localhost,', str(playbook))
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'ERROR' not in run.stderr, run.stderr


def test_the_syntax_check_fails_on_an_unknown_module(tmp_path):
    """The check above can fail: a misspelt module name is an error."""
    playbook = tmp_path / 'typo.yml'
    playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'A typo', 'selfhost.backup.backup_job': {'jobs': []}}]}]))
    run = ansible_playbook('--syntax-check', '-i', 'localhost,', str(playbook))
    assert run.returncode != 0
    assert 'selfhost.backup.backup_job' in run.stdout + run.stderr
