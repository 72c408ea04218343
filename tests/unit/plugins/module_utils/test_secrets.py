# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The secrets layout of an instance: credentials, root-only files, environment names."""

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _layout, _secrets

LAYOUT = _layout.Layout('borg', 'app')


def test_secrets_inline_passphrase_and_environment():
    secrets = _secrets.secrets(LAYOUT, 'pw', None, {'B': 'b', 'A': 'a'})
    assert secrets.credentials == {
        'passphrase': '/etc/selfhost-backup/borg/app/passphrase',
        'env.A': '/etc/selfhost-backup/borg/app/env.A',
        'env.B': '/etc/selfhost-backup/borg/app/env.B',
    }
    assert secrets.env_names == ('A', 'B')
    assert secrets.files == (
        ('/etc/selfhost-backup/borg/app/passphrase', 'pw'),
        ('/etc/selfhost-backup/borg/app/env.A', 'a'),
        ('/etc/selfhost-backup/borg/app/env.B', 'b'),
    )


def test_secrets_passphrase_file_is_only_referenced():
    secrets = _secrets.secrets(LAYOUT, None, '/root/pass', {})
    assert secrets.credentials == {'passphrase': '/root/pass'}
    assert secrets.files == ()


@pytest.mark.parametrize('passphrase, passphrase_file', [(None, None), ('pw', '/root/pass')])
def test_secrets_need_exactly_one_passphrase(passphrase, passphrase_file):
    with pytest.raises(_layout.ProviderError, match='exactly one'):
        _secrets.secrets(LAYOUT, passphrase, passphrase_file, {})


def test_secrets_refuse_bad_environment_names():
    with pytest.raises(_layout.ProviderError, match='environment variable'):
        _secrets.secrets(LAYOUT, 'pw', None, {'lower-case': 'x'})
