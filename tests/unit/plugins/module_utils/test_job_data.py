# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The data file writer."""

from __future__ import annotations

import pytest

from ansible_collections.selfhost.backup.plugins.module_utils import _job_data


@pytest.mark.parametrize('value', ['a\0b', ['ok', 'a\0b'], {'': '/x'}, {'k': 'a\0'}])
def test_values_bash_cannot_hold_are_refused(value):
    with pytest.raises(_job_data.JobDataError):
        _job_data.assignment('NAME', value)
