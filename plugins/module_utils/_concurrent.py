# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Run one function over many items at once, bounded by the host's cores (restic_repository, borg_repository).

Items with the same key (a repository two instances share) run one after the other, in their order, in one
thread: a second ``restic init`` of the same repository must see the first one's result. Each item's outcome
comes back in the order of the items, the value or the exception it raised, so the caller reports every failing
item, as one after the other would have.
"""

from __future__ import annotations

import os
import typing as t
from concurrent.futures import ThreadPoolExecutor

T = t.TypeVar('T')
R = t.TypeVar('R')


def default_jobs() -> int:
    """How many at once by default: the host's cores (the work is a tool's key derivation, CPU-bound)."""
    return os.cpu_count() or 1


def run_grouped(function: t.Callable[[T], R], items: t.Sequence[T], key: t.Callable[[T], t.Hashable],
                jobs: int | None = None) -> list[tuple[R | None, Exception | None]]:
    """``function(item)`` for every item: the groups of items with the same ``key`` at most ``jobs`` at a time
    (the host's cores when None or < 1), each group's items one after the other. Returns ``(value, None)`` or
    ``(None, exception)`` per item, in the order of ``items``."""
    groups: dict[t.Hashable, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    outcomes: list[tuple[R | None, Exception | None]] = [(None, None)] * len(items)

    def run_group(indexes: list[int]) -> None:
        for index in indexes:
            try:
                outcomes[index] = (function(items[index]), None)
            except Exception as exc:  # pylint: disable=broad-exception-caught  # handed back to the caller
                outcomes[index] = (None, exc)

    workers = min(jobs if jobs and jobs > 0 else default_jobs(), len(groups))
    if workers <= 1:
        for indexes in groups.values():
            run_group(indexes)
        return outcomes
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run_group, indexes) for indexes in groups.values()]:
            future.result()
    return outcomes
