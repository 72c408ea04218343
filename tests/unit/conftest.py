# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make ``ansible_collections.selfhost.backup`` importable from the work tree.

Under ansible-test the collection already sits in an ``ansible_collections/selfhost/backup`` tree; under a plain
``pytest tests/unit`` a temporary tree with a symlink to the repository stands in for it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _already_importable() -> bool:
    parts = COLLECTION_ROOT.split(os.sep)
    return parts[-3:-2] == ['ansible_collections'] and parts[-2:] == ['selfhost', 'backup']


if not _already_importable():
    _TREE = tempfile.mkdtemp(prefix='selfhost-backup-unit-')
    atexit.register(shutil.rmtree, _TREE, True)
    os.makedirs(os.path.join(_TREE, 'ansible_collections', 'selfhost'))
    os.symlink(COLLECTION_ROOT, os.path.join(_TREE, 'ansible_collections', 'selfhost', 'backup'))
    sys.path.insert(0, _TREE)
