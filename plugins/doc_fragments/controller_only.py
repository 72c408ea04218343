# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The attributes of the collection's actions that run on the controller and change nothing.

    An action that also reads the host (platform_check's fact gathering, provider_instances with check_host)
    overrides C(action) and C(platform) in its own C(attributes), which take precedence over the fragment's.
    """

    DOCUMENTATION = r"""
options: {}
attributes:
  action:
    description: Runs as an action plugin on the controller.
    support: full
  async:
    description: Cannot run asynchronously.
    support: none
  bypass_host_loop:
    description: Runs once per host.
    support: none
  check_mode:
    description: It changes nothing, so it runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing is changed, so there is no diff.
    support: none
  platform:
    description: Runs on the controller; the target's platform does not matter.
    support: full
    platforms: all
"""
