# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""`ansible-galaxy collection build` (what `make build` runs) succeeds without a warning, and the tarball holds the
collection with complete metadata and nothing of the test machinery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
GALAXY = yaml.safe_load((ROOT / 'galaxy.yml').read_text())


def build(tmp_path: Path, root: Path = ROOT) -> tuple[subprocess.CompletedProcess, Path]:
    command = Path(sys.executable).parent / 'ansible-galaxy'
    # The deprecation warnings of Python packages (PYTHONWARNINGS) are not ansible-galaxy's.
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', PYTHONWARNINGS='ignore')
    run = subprocess.run([str(command), 'collection', 'build', '--output-path', str(tmp_path), str(root)],
                         capture_output=True, text=True, check=False, env=env, cwd=tmp_path)
    return run, tmp_path / f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(word in line for word in ('[WARNING]', '[DEPRECATION', 'ERROR'))]


def test_the_collection_builds_without_a_warning(tmp_path):
    run, tarball = build(tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert problems(output) == []
    assert tarball.is_file(), output
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile('MANIFEST.json'))['collection_info']  # type: ignore[arg-type]
    # What a user needs, and nothing of the test machinery or a local cache.
    for needed in ('README.md', 'meta/runtime.yml', 'plugins/modules/backup_jobs.py', 'roles/restic/tasks/main.yml',
                   'roles/provider_common/files/job.sh', 'playbooks/site.yml', 'docs/source-code.md'):
        assert needed in names, needed
    top = {name.split('/')[0] for name in names}
    assert top.isdisjoint({'tests', 'extensions', 'bench', '.cache', '.venv', '.git', 'Makefile', 'mypy.ini'}), top
    assert [name for name in names if '__pycache__' in name or name.endswith('.pyc')] == []
    assert manifest['description'] and manifest['readme'] == 'README.md' and manifest['authors']
    assert manifest['license'] == ['GPL-3.0-or-later']
    assert {'backup', 'restic', 'borg', 'postgresql', 'mariadb', 'sqlite'} <= set(manifest['tags'])


def test_the_check_sees_a_warning_of_the_build(tmp_path):
    """A galaxy.yml with a misspelt key builds, with a warning the test above would fail on."""
    copy = tmp_path / 'collection'
    (copy / 'meta').mkdir(parents=True)
    (copy / 'meta' / 'runtime.yml').write_text((ROOT / 'meta' / 'runtime.yml').read_text())
    (copy / 'README.md').write_text('readme')
    (copy / 'galaxy.yml').write_text((ROOT / 'galaxy.yml').read_text() + 'homepag: https://example.invalid\n')
    run, tarball = build(tmp_path, copy)
    assert run.returncode == 0 and tarball.is_file()
    assert problems(run.stdout + run.stderr) == [
        f"[WARNING]: Found unknown keys in collection galaxy.yml at '{copy / 'galaxy.yml'}': homepag"]


def test_galaxy_names_only_urls_that_exist():
    """No invented address: the collection is not published, so galaxy.yml names no repository, documentation,
    homepage or issue tracker (add them when they exist)."""
    assert {'repository', 'documentation', 'homepage', 'issues'}.isdisjoint(GALAXY), sorted(GALAXY)
