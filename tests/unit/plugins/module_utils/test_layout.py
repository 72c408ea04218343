# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Names and paths of an instance on the host."""

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _layout

LAYOUT = _layout.Layout('borg', 'app')


def test_layout_names():
    assert LAYOUT.job_name == 'borg-backup-app'
    assert LAYOUT.backup_service == 'borg-backup-app.service'
    assert LAYOUT.restore_script == 'borg-restore-app'
    assert LAYOUT.script_path == '/usr/local/bin/borg-restore-app'
    assert LAYOUT.secrets_dir == '/etc/selfhost-backup/borg/app'
    assert LAYOUT.secret_path('passphrase') == '/etc/selfhost-backup/borg/app/passphrase'
    assert (LAYOUT.drill_job_name, LAYOUT.drill_service) == ('borg-drill-app', 'borg-drill-app.service')
    # backup_jobs' prune prefixes: the backup's and the drill's families never contain each other's names.
    assert (_layout.job_prefix('borg'), _layout.drill_prefix('borg')) == ('borg-backup-', 'borg-drill-')


@pytest.mark.parametrize('name', ['', '../x', 'a b', '-a', 'x' * 65])
def test_layout_refuses_bad_instance_names(name):
    with pytest.raises(_layout.ProviderError):
        _layout.Layout('restic', name)
