# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""What every provider (``_restic.py``, ``_borg.py``) plans for one instance. Pure, no I/O."""

from __future__ import annotations

import dataclasses
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _layout


@dataclasses.dataclass(frozen=True)
class InstanceJob:
    """What every provider plans for one instance: backup_jobs options (no secret) of its backup and, when its
    drill is enabled, of its restore drill, the secret files the role writes root-only, the credentials the units
    load, and the local repository to create (if any)."""

    layout: _layout.Layout
    timer: dict[str, t.Any]
    drill: dict[str, t.Any] | None
    secret_files: tuple[tuple[str, str], ...]
    credentials: dict[str, str]
    local_path: str | None
