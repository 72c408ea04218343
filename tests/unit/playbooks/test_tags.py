# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tags: every role tags its tasks with its name, so that `--tags restic` converges restic alone (with the requester
site.yml tags for it) and `--tags postgresql` the requester alone. A dynamic include passes no tag of its own to
the tasks it includes, so each include in an entry point applies the role's tag (apply: tags)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_run import ansible_playbook

ROOT = Path(__file__).resolve().parents[3]
PROVIDERS = ['restic', 'borg']
REQUESTERS = ['postgresql', 'mariadb', 'sqlite']
# Roles that are neither: the backup server.
SERVERS = ['backup_server']
# The files a play may enter a role by (main, and the providers' tasks_from: validate). The files they import
# inherit the tags of the import.
ENTRY_POINTS = [(role, 'main') for role in PROVIDERS + REQUESTERS + SERVERS] + [(role, 'validate') for role in PROVIDERS]
INCLUDES = ('ansible.builtin.include_role', 'ansible.builtin.include_tasks')


def tasks(role: str, entry: str) -> list[dict]:
    return yaml.safe_load((ROOT / 'roles' / role / 'tasks' / f'{entry}.yml').read_text())


@pytest.mark.parametrize('role, entry', ENTRY_POINTS)
def test_every_task_of_an_entry_point_carries_the_role_s_tag(role, entry):
    for task in tasks(role, entry):
        assert role in task.get('tags', []), (role, entry, task['name'])
        for include in INCLUDES:
            if include in task:
                assert role in task[include].get('apply', {}).get('tags', []), (role, entry, task['name'])


@pytest.mark.parametrize('role', PROVIDERS + REQUESTERS + SERVERS)
def test_the_platform_check_is_the_first_task_of_every_role(role):
    entry = 'validate' if role in PROVIDERS else 'main'
    first = tasks(role, entry)[0]
    assert first['selfhost.backup.platform_check'] == {
        'allow_untested': '{{ selfhost_backup_allow_untested_platform }}'}
    if role in PROVIDERS:
        assert tasks(role, 'main')[0]['ansible.builtin.import_tasks'] == 'validate.yml'


def listed_tasks(tags: str) -> list[str]:
    run = ansible_playbook('--list-tasks', '--tags', tags, '-i', 'playbooks/inventory.example.yml',
                           'playbooks/site.yml')
    assert run.returncode == 0, run.stdout + run.stderr
    return [line.strip() for line in run.stdout.splitlines() if 'TAGS: [' in line and 'play #' not in line]


def test_site_with_tags_restic_runs_the_requester_and_restic_and_nothing_of_borg():
    listed = listed_tasks('restic')
    assert [line for line in listed if 'borg' in line.split('TAGS:')[0].lower()] == []
    names = [line.split('\t')[0] for line in listed]
    assert 'Validate the restic instances before any provider changes the host' in names
    assert 'Back up with restic' in names
    assert 'selfhost.backup.postgresql : Publish the whole-cluster request' in names


def test_site_with_tags_borg_runs_nothing_of_restic():
    names = [line.split('\t')[0] for line in listed_tasks('borg')]
    assert [name for name in names if 'restic' in name.lower()] == []
    assert 'Back up with borg' in names
    assert 'selfhost.backup.postgresql : Publish the whole-cluster request' in names


def test_site_with_tags_postgresql_runs_the_requester_alone():
    names = [line.split('\t')[0] for line in listed_tasks('postgresql')]
    assert 'selfhost.backup.postgresql : Publish the whole-cluster request' in names
    assert [name for name in names if 'restic' in name.lower() or 'borg' in name.lower()] == []


def test_site_without_tags_runs_every_step():
    names = [line.split('\t')[0] for line in listed_tasks('all')]
    for name in ('Back up with restic', 'Back up with borg', 'Show what restic installed', 'Show what borg installed'):
        assert name in names
