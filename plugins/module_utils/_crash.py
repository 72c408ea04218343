# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""An unexpected error of a host module that handles secrets, reported through ``fail_json``.

The modules restic_repository, borg_repository and job_paths read secrets from files on the host and register them
in ``no_log_values``. An exception that escaped them would reach Ansible's module wrapper, which reports it as it
is, and their action plugin can mask only the secrets it was given inline, not those read on the host. Reported
through ``fail_json``, with every secret the module knows masked in every form Python writes it (``_masking``:
an exception's message often quotes a value with repr), the message is as safe as any other failure of the
module.
"""

from __future__ import annotations

import contextlib
import typing as t

from ansible_collections.selfhost.backup.plugins.module_utils._masking import masker


class Failer(t.Protocol):
    """What a report needs of the AnsibleModule: the secrets it registered, and fail_json."""

    no_log_values: set[str]

    def fail_json(self, msg: str, **kwargs: t.Any) -> t.NoReturn:
        ...  # pragma: no cover


class Progress:
    """Whether the module may have changed the host by the time of an error (set by the module)."""

    changed = False


@contextlib.contextmanager
def reported(module: Failer) -> t.Iterator[Progress]:
    """Run the module's work; an exception (not exit_json's or fail_json's SystemExit) fails the module with its
    type and message, masked, and ``changed`` as the module last set it."""
    progress = Progress()
    try:
        yield progress
    except Exception as exc:  # pylint: disable=broad-exception-caught
        mask = masker(str(value) for value in module.no_log_values)
        module.fail_json(msg=mask(f'unexpected error: {type(exc).__name__}: {exc}'), changed=progress.changed)
