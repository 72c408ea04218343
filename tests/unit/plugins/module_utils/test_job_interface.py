# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The seam between the Python that writes a job's data and the static shell that reads it: the same names."""

from __future__ import annotations

import re
import subprocess

import pytest
from job_library import JOB_FILES

from ansible_collections.selfhost.backup.plugins.module_utils import _borg, _job_script, _layout, _restic, _secrets


def shell_list(file: str, name: str) -> list[str]:
    """A readonly array of a shell file, as bash reads it."""
    text = open(JOB_FILES[file], encoding='utf-8').read()
    match = re.search(rf'^readonly {name}=\([^)]*\)', text, re.M)
    assert match, f'{file} has no {name}'
    out = subprocess.run(['bash', '-c', f'{match.group(0)}; printf "%s\\n" "${{{name}[@]}}"'], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def test_job_sh_reads_what_the_data_file_defines():
    assert shell_list('job.sh', 'JOB_DATA') == list(_job_script.JOB_DATA)


@pytest.mark.parametrize('provider, module, commands', [
    ('restic', _restic, _restic.Commands(binary='/usr/bin/restic', version=(0, 18, 0), instance='app',
                                         backup_name='db.sql', host='h1')),
    ('borg', _borg, _borg.Commands(binary='/usr/bin/borg', version=(1, 4, 0), instance='app', host='h1',
                                   backup_name='db.sql', repository='/srv/app', cache_dir='/var/cache/x',
                                   encryption='repokey-blake2', compression='zstd,3')),
])
def test_the_provider_half_reads_what_its_python_writes(provider, module, commands):
    assert shell_list(f'{provider}.sh', 'PROVIDER_DATA') == list(module.DATA_NAMES)
    assert [name for name, dummy in module.shell_data(commands)] == list(module.DATA_NAMES)


def test_no_secret_can_take_a_variable_of_the_job_script():
    """A secret exported under a name the script sets would fail (readonly) or change the job: every global of
    the shell files is reserved (SCRIPT_GLOBALS), with the data variables."""
    reserved = _secrets.SCRIPT_GLOBALS | set(_job_script.JOB_DATA) | set(_restic.DATA_NAMES) | set(_borg.DATA_NAMES)
    for file, path in JOB_FILES.items():
        text = open(path, encoding='utf-8').read()
        globals_ = set(re.findall(r'^(?:readonly )?([A-Z_][A-Z0-9_]*)=', text, re.M))
        assert globals_ - reserved == set(), file
    for name in sorted(_secrets.SCRIPT_GLOBALS | set(_restic.DATA_NAMES)):
        with pytest.raises(_layout.ProviderError, match=f'environment_secrets.{name}: the name is taken'):
            _secrets.check_environment_names([name], _restic.DATA_NAMES)
