# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""The retention step restic forget and borg prune share: its flags, and its command line (or None). Pure."""

from __future__ import annotations

import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils import _layout


def retention_flags(retention: t.Mapping[str, t.Any], periods: t.Sequence[str]) -> list[str]:
    """``--keep-<period> N`` for each period rule given, then ``--keep-within``: the flags restic forget and
    borg prune share. Empty without any rule, which means keep everything."""
    args: list[str] = []
    for period in periods:
        value = retention.get(f'keep_{period}')
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _layout.ProviderError(f'retention.keep_{period} must be a positive integer, got {value!r}')
            args += [f'--keep-{period}', str(value)]
    if retention.get('keep_within'):
        args += ['--keep-within', str(retention['keep_within'])]
    return args


def tuple_or_none(args: t.Sequence[str] | None) -> tuple[str, ...] | None:
    """A command line for a frozen dataclass; None (no such step, e.g. no retention rule) stays None."""
    return tuple(args) if args is not None else None
