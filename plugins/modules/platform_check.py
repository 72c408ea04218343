#!/usr/bin/python
# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: platform_check
short_description: Fail unless the host runs a platform the roles of selfhost.backup support
version_added: 0.1.0
description:
  - The first task of every role of this collection. It reads the host's facts (C(ansible_facts)) and fails,
    before anything changes, unless the host runs Debian 12 (bookworm) or Debian 13 (trixie).
  - The message names the OS found (distribution, version, os family, package manager) and the supported ones.
  - >-
    An untested apt-based system (os family C(Debian) with the package manager C(apt), for example Ubuntu LTS or an
    older Debian) passes with a warning when O(allow_untested=true). Any other system is refused even then: the
    roles install their packages with apt.
  - When the play did not gather facts, it gathers the minimal subset (C(gather_subset=!all,min)) itself, which
    changes nothing on the host.
author:
  - selfhost.backup developers (!UNKNOWN)
options:
  allow_untested:
    description:
      - Let an untested apt-based system through, with a warning, at the user's own risk.
      - The roles pass their variable C(selfhost_backup_allow_untested_platform).
    type: bool
    default: false
extends_documentation_fragment:
  - selfhost.backup.controller_only
attributes:
  action:
    description: Runs as an action plugin on the controller, from the host's facts.
  platform:
    description: Decides from the facts; it runs the fact gathering module on the host only when facts are missing.
    platforms: posix
seealso:
  - module: ansible.builtin.setup
"""

EXAMPLES = r"""
- name: Fail unless the host runs Debian 12 or 13
  selfhost.backup.platform_check:

- name: Let an untested apt-based system (e.g. Ubuntu 24.04) through with a warning
  selfhost.backup.platform_check:
    allow_untested: "{{ selfhost_backup_allow_untested_platform }}"
"""

RETURN = r"""
supported:
  description: Whether the host runs a tested platform (false for an untested one let through).
  returned: always
  type: bool
  sample: true
platform:
  description: The facts the decision read.
  returned: always
  type: dict
  sample:
    distribution: Debian
    distribution_version: "13.1"
    distribution_major_version: "13"
    os_family: Debian
    pkg_mgr: apt
msg:
  description: Why the host is refused, the warning for an untested one, or that it is supported.
  returned: always
  type: str
  sample: >-
    selfhost.backup supports Debian 12 (bookworm) and Debian 13 (trixie); this host runs Fedora 41 (os family
    RedHat, package manager unknown). Nothing was changed. The roles need an apt-based system (os family Debian,
    package manager apt), so selfhost_backup_allow_untested_platform cannot let this one through.
"""
