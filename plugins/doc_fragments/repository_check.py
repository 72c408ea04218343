# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The options restic_repository and borg_repository share; each module sets the default of O(state_file)."""

    DOCUMENTATION = r"""
options:
  timeout:
    description:
      - Seconds each call of the tool may take (C(timeout) of coreutils); recent restic retries an unreachable
        backend for many minutes.
    type: int
    default: 120
  jobs:
    description:
      - How many repositories are probed (and, where the module initialises, initialised) at once; each opening
        derives the key from the passphrase, which takes a core for about a second. Repositories at the same
        location are handled one after the other.
      - Unset or V(0), the number of the host's cores.
    type: int
  state_file:
    description:
      - Root-only file (mode C(0600)) of the fingerprints of the local repositories opened so far.
    type: path
"""
