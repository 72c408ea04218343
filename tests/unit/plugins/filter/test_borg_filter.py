# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filter users call (the authorized_keys line of a borg job's key on their own server) and the one the borg
role calls for a selfhost.backup.backup_server host."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.selfhost.backup.plugins.filter import borg as borg_filter


def test_authorized_keys():
    line = borg_filter.borg_authorized_keys('ssh-ed25519 AAAA c', '/srv/borg/r')
    assert line == 'command="borg serve --restrict-to-path /srv/borg/r --append-only",restrict ssh-ed25519 AAAA c'
    assert 'append-only' not in borg_filter.borg_authorized_keys('ssh-ed25519 AAAA c', '/srv/borg/r', False)


def test_authorized_keys_refuses_a_second_line():
    with pytest.raises(AnsibleFilterError, match='borg_authorized_keys: the public key is not one line'):
        borg_filter.borg_authorized_keys('ssh-ed25519 AAAA c\nssh-ed25519 BBBB x', '/srv/borg/r')


KEY = 'AAAAC3NzaC1lZDI1NTE5AAAAIHL6Nxht88rU8mbJuymhvn99fFxIHneZNHiTkUqXD1TX'
OPTIONS = 'command="borg serve --append-only --restrict-to-repository /srv/borg/db1/app",restrict'


def test_server_authorized_keys_takes_the_key_of_the_file_and_the_planned_comment():
    line = borg_filter.borg_server_authorized_keys(f'ssh-ed25519 {KEY} borg-backup-app@otherhost\n', OPTIONS,
                                                   'borg-backup-app@db1', 'db1:/k.pub')
    assert line == f'{OPTIONS} ssh-ed25519 {KEY} borg-backup-app@db1'


def test_server_authorized_keys_fails_naming_the_host_and_the_file():
    content = f'ssh-ed25519 {KEY} borg-backup-app@db1\nssh-ed25519 {KEY} unrestricted\n'
    with pytest.raises(AnsibleFilterError) as info:
        borg_filter.borg_server_authorized_keys(content, OPTIONS, 'borg-backup-app@db1',
                                                'db1:/etc/selfhost-backup/borg/app/ssh_key.pub')
    assert str(info.value).startswith('db1:/etc/selfhost-backup/borg/app/ssh_key.pub: it is not exactly one line '
                                      '"ssh-ed25519 <key> <comment>"')
    assert 'nothing was written to the server' in str(info.value)
    assert 'unrestricted' not in str(info.value)  # the file's content is not echoed


def test_filters_are_registered():
    assert set(borg_filter.FilterModule().filters()) == {'borg_authorized_keys', 'borg_server_authorized_keys'}
