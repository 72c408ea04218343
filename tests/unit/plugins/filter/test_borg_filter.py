# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one filter users call: the authorized_keys line of a borg job's key on its server."""

from __future__ import annotations

from ansible_collections.selfhost.backup.plugins.filter import borg as borg_filter


def test_authorized_keys():
    line = borg_filter.borg_authorized_keys('ssh-ed25519 AAAA c', '/srv/borg/r')
    assert line == 'command="borg serve --restrict-to-path /srv/borg/r --append-only",restrict ssh-ed25519 AAAA c'
    assert 'append-only' not in borg_filter.borg_authorized_keys('ssh-ed25519 AAAA c', '/srv/borg/r', False)


def test_filters_are_registered():
    assert set(borg_filter.FilterModule().filters()) == {'borg_authorized_keys'}
