# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The job script's library (job.sh and the providers' halves) as the roles install it, once per session."""

from __future__ import annotations

import shutil
import typing as t

import pytest
from job_library import make_library


@pytest.fixture(scope='session')
def job_library() -> t.Iterator[str]:
    directory = make_library()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
