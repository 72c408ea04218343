# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every request a requester publishes with restore_into_cmd or restore_database_cmd also says restore_checks_names:
true (its helper knows SELFHOST_BACKUP_CHECK=1), else the restore script never asks the helper about the names
before it opens the repository. The contract molecule scenario checks the published requests on real hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / 'roles'


def publishing_tasks(role: str) -> list[tuple[str, str]]:
    """(name, the set_fact's text) of each task of the role that publishes a restore_into_cmd or restore_database_cmd."""
    tasks = yaml.safe_load((ROLES / role / 'tasks' / 'main.yml').read_text())
    found = []
    for task in tasks:
        facts = task.get('ansible.builtin.set_fact')
        text = yaml.safe_dump(facts, width=10_000)
        if facts and ('restore_into_cmd' in text or 'restore_database_cmd' in text):
            found.append((task['name'], text))
    return found


@pytest.mark.parametrize('role, count', [('postgresql', 2), ('mariadb', 2), ('sqlite', 1)])
def test_every_request_with_a_restore_target_command_says_its_helper_checks_names(role, count):
    tasks = publishing_tasks(role)
    assert len(tasks) == count, [name for name, text in tasks]
    for name, text in tasks:
        assert "'restore_checks_names': true" in text or 'restore_checks_names: true' in text, name
