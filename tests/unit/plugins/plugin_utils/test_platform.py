# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.selfhost.backup.plugins.plugin_utils import _platform


def facts(distribution, version, os_family, pkg_mgr):
    return {'distribution': distribution, 'distribution_version': version,
            'distribution_major_version': version.split('.')[0], 'os_family': os_family, 'pkg_mgr': pkg_mgr}


DEBIAN12 = facts('Debian', '12.11', 'Debian', 'apt')
DEBIAN13 = facts('Debian', '13', 'Debian', 'apt')
UBUNTU = facts('Ubuntu', '24.04', 'Debian', 'apt')
DEBIAN11 = facts('Debian', '11.9', 'Debian', 'apt')
FEDORA = facts('Fedora', '41', 'RedHat', 'dnf5')
ALPINE = facts('Alpine', '3.20.3', 'Alpine', 'apk')
# An apt-rpm system (ALT Linux) or a Debian-family one without apt: not apt-based.
DEBIAN_FAMILY_WITHOUT_APT = facts('Devuan', '5', 'Debian', 'unknown')


@pytest.mark.parametrize('host', [DEBIAN12, DEBIAN13])
@pytest.mark.parametrize('allow', [False, True])
def test_debian_12_and_13_are_supported_without_a_message(host, allow):
    assert _platform.verdict(host, allow) == _platform.Verdict(allowed=True, supported=True, message='')


@pytest.mark.parametrize('host, name', [(FEDORA, 'Fedora 41 (os family RedHat, package manager dnf5)'),
                                        (ALPINE, 'Alpine 3.20.3 (os family Alpine, package manager apk)'),
                                        (DEBIAN_FAMILY_WITHOUT_APT, 'Devuan 5 (os family Debian, package manager '
                                                                    'unknown)')])
@pytest.mark.parametrize('allow', [False, True])
def test_a_system_without_apt_is_refused_even_when_untested_ones_are_allowed(host, name, allow):
    verdict = _platform.verdict(host, allow)
    assert verdict.allowed is False and verdict.supported is False
    assert verdict.message == (
        f'selfhost.backup supports Debian 12 (bookworm) and Debian 13 (trixie); this host runs {name}. Nothing was '
        'changed. The roles need an apt-based system (os family Debian, package manager apt), so '
        'selfhost_backup_allow_untested_platform cannot let this one through.')


@pytest.mark.parametrize('host, name', [(UBUNTU, 'Ubuntu 24.04'), (DEBIAN11, 'Debian 11.9')])
def test_an_untested_apt_based_system_is_refused_naming_the_variable_that_lets_it_through(host, name):
    verdict = _platform.verdict(host, False)
    assert verdict.allowed is False and verdict.supported is False
    assert verdict.message == (
        'selfhost.backup supports Debian 12 (bookworm) and Debian 13 (trixie); this host runs '
        f'{name} (os family Debian, package manager apt). Nothing was changed. It is apt-based but untested: set '
        'selfhost_backup_allow_untested_platform: true to try it at your own risk.')


def test_an_untested_apt_based_system_goes_on_with_a_warning_when_allowed():
    verdict = _platform.verdict(UBUNTU, True)
    assert verdict.allowed is True and verdict.supported is False
    assert verdict.message == (
        'selfhost.backup supports Debian 12 (bookworm) and Debian 13 (trixie); this host runs Ubuntu 24.04 (os '
        'family Debian, package manager apt). It is untested; going on because '
        'selfhost_backup_allow_untested_platform is true, at your own risk.')


@pytest.mark.parametrize('major', ['14', '1', '', 'n/a', None, 13])
def test_only_the_major_versions_12_and_13_of_debian_are_supported(major):
    host = dict(DEBIAN13, distribution_major_version=major)
    assert _platform.is_supported(host) is (str(major) == '13')


def test_debian_testing_without_a_version_is_untested_and_missing_facts_read_unknown():
    testing = dict(DEBIAN13, distribution_version='n/a', distribution_major_version='n/a')
    assert _platform.verdict(testing, False).allowed is False
    assert _platform.verdict(testing, True).allowed is True
    verdict = _platform.verdict({}, True)
    assert verdict.allowed is False
    assert 'this host runs unknown unknown (os family unknown, package manager unknown)' in verdict.message


def test_a_distribution_named_like_debian_in_another_case_is_not_debian():
    assert _platform.verdict(dict(DEBIAN13, distribution='debian'), False).allowed is False


ROOT = Path(__file__).resolve().parents[4]
ROLES = sorted(path.name for path in (ROOT / 'roles').iterdir() if (path / 'meta' / 'main.yml').is_file())
PUBLIC_ROLES = ['backup_server', 'borg', 'mariadb', 'postgresql', 'restic', 'sqlite']


@pytest.mark.parametrize('role', ROLES)
def test_every_role_s_galaxy_platforms_are_the_supported_ones(role):
    meta = yaml.safe_load((ROOT / 'roles' / role / 'meta' / 'main.yml').read_text())
    assert meta['galaxy_info']['platforms'] == [{'name': 'Debian', 'versions': list(_platform.SUPPORTED.values())}]


@pytest.mark.parametrize('role', PUBLIC_ROLES)
def test_every_role_documents_the_variable_with_the_default_false(role):
    defaults = yaml.safe_load((ROOT / 'roles' / role / 'defaults' / 'main.yml').read_text())
    assert defaults[_platform.VARIABLE] is False
    spec = yaml.safe_load((ROOT / 'roles' / role / 'meta' / 'argument_specs.yml').read_text())
    option = spec['argument_specs']['main']['options'][_platform.VARIABLE]
    assert option['type'] == 'bool' and option['default'] is False
    assert _platform.VARIABLE in (ROOT / 'roles' / role / 'README.md').read_text()


def test_the_public_roles_are_every_role_but_the_private_ones():
    assert sorted(set(ROLES) - set(PUBLIC_ROLES)) == ['provider_common', 'requester_common']
