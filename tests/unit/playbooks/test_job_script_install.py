# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Each role installs its own half of the job script: provider_common's prepare job.sh, each provider role its
files/<provider>.sh, beside it, right after prepare and before anything installs a restore script that sources it.
No role reaches into another role's files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LIBRARY = '/usr/local/lib/selfhost-backup'


def tasks(role: str, entry: str) -> list[dict]:
    return yaml.safe_load((ROOT / 'roles' / role / 'tasks' / f'{entry}.yml').read_text())


def copies(task_list: list[dict]) -> dict[str, dict]:
    """dest -> the copy (src, owner, group, mode) of every ansible.builtin.copy task, loops unrolled."""
    found = {}
    for task in task_list:
        copy = task.get('ansible.builtin.copy')
        for item in (task.get('loop') or [{}]) if copy else []:
            # A field templated from the loop item ({{ item.mode }}) takes the item's value.
            done = {key: item.get(key) if value == f'{{{{ item.{key} }}}}' else value for key, value in copy.items()}
            found[done.pop('dest')] = {key: done.get(key) for key in ('src', 'owner', 'group', 'mode')}
    return found


def test_no_role_reaches_into_another_role_s_files():
    for path in sorted((ROOT / 'roles').glob('*/tasks/*.yml')):
        assert 'role_path }}/..' not in path.read_text(), path


def test_provider_common_installs_its_own_half_only():
    installed = copies(tasks('provider_common', 'prepare'))
    assert installed[f'{LIBRARY}/job.sh'] == {'src': 'job.sh', 'owner': 'root', 'group': 'root', 'mode': '0644'}
    assert not [dest for dest in installed if dest.endswith(('/restic.sh', '/borg.sh'))]


def test_job_sh_is_the_last_task_of_prepare_so_no_failure_splits_the_halves():
    # The provider installs its half right after prepare (test below): nothing between the two copies can fail and
    # leave a new job.sh beside an old <provider>.sh.
    last = tasks('provider_common', 'prepare')[-1]
    assert f'{LIBRARY}/job.sh' in copies([last])


@pytest.mark.parametrize('provider', ['restic', 'borg'])
def test_a_provider_installs_its_half_beside_job_sh_right_after_prepare(provider):
    steps = tasks(provider, 'main')
    installed = copies(steps)
    assert installed[f'{LIBRARY}/{provider}.sh'] == {
        'src': f'{provider}.sh', 'owner': 'root', 'group': 'root', 'mode': '0644'}
    assert (ROOT / 'roles' / provider / 'files' / f'{provider}.sh').is_file()
    entries = [task.get('ansible.builtin.include_role', {}).get('tasks_from') for task in steps]
    own = next(index for index, task in enumerate(steps)
               if task.get('ansible.builtin.copy', {}).get('src') == f'{provider}.sh')
    assert own == entries.index('prepare') + 1 < entries.index('install_jobs')
