# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This plugin_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Which hosts the roles run on: the decision of the action ``platform_check``, from the host's facts only.

Debian 12 and 13 are supported (tested by the molecule scenarios). Any other apt-based system (os family Debian,
package manager apt: Ubuntu, an older Debian, Debian testing) is refused unless the user allows untested platforms;
every other system is refused even then, since the roles install packages with apt.
"""

from __future__ import annotations

import dataclasses
import typing as t

VARIABLE = 'selfhost_backup_allow_untested_platform'
SUPPORTED = {'12': 'bookworm', '13': 'trixie'}  # Debian major version -> release name
SUPPORTED_TEXT = ' and '.join(f'Debian {major} ({name})' for major, name in SUPPORTED.items())
# The facts the decision reads; fact gathering must have collected them (the action gathers them when missing).
FACTS = ('distribution', 'distribution_version', 'distribution_major_version', 'os_family', 'pkg_mgr')


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``allowed``: the role may go on; ``supported``: a tested platform; ``message``: why a host is refused, or the
    warning for an untested one let through (empty for a supported one)."""

    allowed: bool
    supported: bool
    message: str


def _fact(facts: t.Mapping[str, t.Any], name: str) -> str:
    value = facts.get(name)
    return str(value) if value not in (None, '') else 'unknown'


def found(facts: t.Mapping[str, t.Any]) -> str:
    """The OS as the facts name it, e.g. ``Fedora 41 (os family RedHat, package manager dnf5)``."""
    return (f"{_fact(facts, 'distribution')} {_fact(facts, 'distribution_version')} "
            f"(os family {_fact(facts, 'os_family')}, package manager {_fact(facts, 'pkg_mgr')})")


def is_supported(facts: t.Mapping[str, t.Any]) -> bool:
    return facts.get('distribution') == 'Debian' and str(facts.get('distribution_major_version')) in SUPPORTED


def is_apt_based(facts: t.Mapping[str, t.Any]) -> bool:
    return facts.get('os_family') == 'Debian' and facts.get('pkg_mgr') == 'apt'


def verdict(facts: t.Mapping[str, t.Any], allow_untested: bool) -> Verdict:
    if is_supported(facts):
        return Verdict(allowed=True, supported=True, message='')
    head = f'selfhost.backup supports {SUPPORTED_TEXT}; this host runs {found(facts)}.'
    if not is_apt_based(facts):
        return Verdict(allowed=False, supported=False, message=(
            f'{head} Nothing was changed. The roles need an apt-based system (os family Debian, package manager '
            f'apt), so {VARIABLE} cannot let this one through.'))
    if not allow_untested:
        return Verdict(allowed=False, supported=False, message=(
            f'{head} Nothing was changed. It is apt-based but untested: set {VARIABLE}: true to try it at your '
            'own risk.'))
    return Verdict(allowed=True, supported=False, message=(
        f'{head} It is untested; going on because {VARIABLE} is true, at your own risk.'))
