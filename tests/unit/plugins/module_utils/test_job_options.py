# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backup_jobs options of an instance."""

from __future__ import annotations

from ansible_collections.selfhost.backup.plugins.module_utils import _job_options, _job_script, _layout

SPEC = _job_script.ScriptSpec(
    layout=_layout.Layout('borg', 'app'), user='postgres', backup_name='db.sql', backup_cmd='pg_dumpall',
    restore_cmd='psql', credentials={}, env_names=(), stop_units=(), provider_data=())


def test_job_options():
    options = _job_options.job_options(SPEC, _job_options.Schedule('hourly', 5, False), read_write_paths=['/srv/x'],
                                       extra_jobs=[('check', 'weekly')], nice=3, io_scheduling_class='idle',
                                       wants=['network-online.target'])
    assert options['name'] == 'borg-backup-app'
    assert options['exec_start'] == [['/bin/bash', '/usr/local/bin/borg-restore-app', 'backup']]
    assert options['extra_jobs'][0]['exec_start'] == [['/bin/bash', '/usr/local/bin/borg-restore-app', 'check']]
    assert options['cache_directory'] == 'borg-backup-app'
    assert (options['on_calendar'], options['randomized_delay_sec'], options['persistent']) == ('hourly', 5, False)
    assert (options['nice'], options['io_scheduling_class']) == (3, 'idle')
    assert options['restore_script']['name'] == 'borg-restore-app'
    plain = _job_options.job_options(SPEC, _job_options.Schedule())
    assert 'nice' not in plain and 'io_scheduling_class' not in plain
