# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The restic role in check mode on a client its backup server does not know (listed again in backup_server_clients,
or new): the task of tasks/servers.yml that reports the servers that would learn this host's user, and
__restic_pending_authorization of vars/main.yml (the instances whose repository check is not asked), run by
ansible-playbook itself on localhost, with the results of the tasks before them as play variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_run import ansible_playbook

ROLE = Path(__file__).resolve().parents[3] / 'roles' / 'restic'
REPORT = "Report the backup servers that would learn this host's user (check mode)"
# htpasswd -v on each server: srv-a accepts this host's password, srv-b and srv-c do not (another password: a
# dropped client's user came back with a new one; no such user: the host is new, or its user was dropped), srv-d
# has no htpasswd file yet (rc 1: a server this play sets up, or no backup_server host at all).
USERS = {'results': [{'item': 'srv-a', 'rc': 0}, {'item': 'srv-b', 'rc': 3}, {'item': 'srv-c', 'rc': 6},
                     {'item': 'srv-d', 'rc': 1}]}
REGISTRATIONS = [{'server': 'srv-a', 'instance': 'one'}, {'server': 'srv-b', 'instance': 'two'},
                 {'server': 'srv-c', 'instance': 'three'}, {'server': 'srv-b', 'instance': 'four'},
                 {'server': 'srv-d', 'instance': 'five'}]
# What each report says of its server's htpasswd file.
REASONS = {'srv-b': 'its htpasswd file holds another password for this host',
           'srv-c': 'its htpasswd file does not know this host',
           'srv-d': 'its htpasswd file could not be read: htpasswd -v exited 1; a real run fails there unless the '
                    'backup_server role sets that server up first'}


def report_task() -> dict:
    found = [task for task in yaml.safe_load((ROLE / 'tasks' / 'servers.yml').read_text()) if task['name'] == REPORT]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize('check, pending', [(True, ['two', 'three', 'four', 'five']), (False, [])])
def test_check_mode_reports_the_servers_it_would_register_on_and_skips_their_checks(tmp_path, check, pending):
    play = [{
        'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
        'vars_files': [str(ROLE / 'vars' / 'main.yml')],
        'vars': {'__restic_server_users': USERS, '__restic_plan': {'server_registrations': REGISTRATIONS}},
        'tasks': [report_task(),
                  {'name': 'Show the pending instances',
                   'ansible.builtin.debug': {'msg': 'PENDING=[{{ __restic_pending_authorization | join(" ") }}]'}}],
    }]
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(play))
    run = ansible_playbook('-i', 'localhost,', *(['--check'] if check else []), str(tmp_path / 'play.yml'))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    shown = next(line for line in output.splitlines() if 'PENDING=' in line)
    assert shown.split('PENDING=[', 1)[1].split(']', 1)[0].split() == pending
    reports = [line for line in output.splitlines() if 'would authorize localhost on the rest-server of' in line]
    recap = next(line for line in output.splitlines() if line.startswith('localhost '))
    if check:
        # One report per server that does not accept the password, each a change (what the run would do).
        assert [server for server in ('srv-a', 'srv-b', 'srv-c', 'srv-d')
                if any(f' of {server} ' in line for line in reports)] == ['srv-b', 'srv-c', 'srv-d']
        for server, reason in REASONS.items():
            assert any(f' of {server} ({reason});' in line for line in reports), (server, reports)
        assert 'changed=1' in recap
    else:
        assert reports == [] and 'changed=0' in recap
