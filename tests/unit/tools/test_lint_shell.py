# Copyright (c) selfhost.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""tests/tools/lint-shell.sh, the lint stage's shellcheck gate, on a git checkout of its own: which files it
finds, and that a warning fails it while an info-level finding does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LINT_SHELL = Path(__file__).resolve().parents[3] / 'tests' / 'tools' / 'lint-shell.sh'

CLEAN = '#!/usr/bin/env bash\nset -eu\necho "$1"\n'


def git(repo: Path, *args: str) -> None:
    subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', *args], cwd=repo,
                   check=True, capture_output=True)


def lint(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_SHELL), *args], cwd=repo, capture_output=True, text=True, check=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which('git') is None:
        pytest.skip('git is not installed')
    files = {
        'a.sh': CLEAN,
        'lib.sh': '# shellcheck shell=bash\nvalue=1\nexport value\n',
        '.ci/run': '#!/usr/bin/env bash\nexec make test\n',
        'roles/x/files/helper': '#!/bin/sh\necho "$@"\n',
        'tools/dash': '#! /bin/dash -e\necho "$@"\n',
        'tools/status': '#!/usr/bin/python3\nprint(1)\n',
        'tools/fish': '#!/usr/bin/fish\necho $argv\n',
        'notes.txt': '#!/bin/sh\nnot a script\n',
        'deleted.sh': CLEAN,
        'ignored.sh': CLEAN,
        '.gitignore': 'ignored.sh\n',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, 'init', '-q')
    git(tmp_path, 'add', '--', *(name for name in files if name not in ('ignored.sh', 'lib.sh')))
    git(tmp_path, 'commit', '-q', '-m', 'files')
    (tmp_path / 'deleted.sh').unlink()
    return tmp_path


def test_finds_every_shell_file_git_knows(repo):
    """*.sh tracked or new, extensionless files with a sh/bash/dash shebang; not a deleted or an ignored file,
    nor another interpreter's script or a text file that starts like one."""
    result = lint(repo, '--list')
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ['.ci/run', 'a.sh', 'lib.sh', 'roles/x/files/helper', 'tools/dash']


def test_lists_the_files_of_the_checkout_from_a_subdirectory(repo):
    result = subprocess.run([str(LINT_SHELL), '--list'], cwd=repo / 'roles', capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert 'roles/x/files/helper' in result.stdout.splitlines()


def needs_shellcheck() -> None:
    if shutil.which('shellcheck') is None:
        pytest.skip('shellcheck is not installed (tests/tools/setup-host.sh venv installs it)')


def test_clean_files_pass(repo):
    needs_shellcheck()
    result = lint(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == 'shellcheck -S warning: 5 files'


def test_a_warning_in_a_new_extensionless_script_fails(repo):
    needs_shellcheck()
    (repo / 'tools' / 'late').write_text('#!/bin/bash\nunused=1\n')  # SC2034: a warning
    result = lint(repo)
    assert result.returncode == 1
    assert 'In tools/late line 2:' in result.stdout
    assert 'SC2034 (warning)' in result.stdout


def test_an_info_finding_passes(repo):
    needs_shellcheck()
    (repo / 'a.sh').write_text('#!/usr/bin/env bash\necho $1\n')  # SC2086: info, below the gate
    result = lint(repo)
    assert result.returncode == 0, result.stdout
    assert 'SC2086' not in result.stdout


def test_a_sourced_file_is_followed_relative_to_the_script(repo):
    """The helpers source the shared library through a `# shellcheck source=` path relative to the script:
    followed (-x) it supplies the variables the script uses; a variable set nowhere still fails."""
    needs_shellcheck()
    (repo / 'bin').mkdir()
    (repo / 'bin' / 'main.sh').write_text(
        '#!/usr/bin/env bash\n# shellcheck source=../lib.sh\nsource "${0%/*}/../lib.sh"\necho "$value"\n')
    assert lint(repo).returncode == 0
    (repo / 'bin' / 'main.sh').write_text(
        '#!/usr/bin/env bash\n# shellcheck source=../lib.sh\nsource "${0%/*}/../lib.sh"\necho "$nowhere"\n')
    result = lint(repo)
    assert result.returncode == 1
    assert 'SC2154 (warning)' in result.stdout


def test_rejects_unknown_arguments(repo):
    result = lint(repo, '--all')
    assert result.returncode == 2
    assert 'usage:' in result.stderr
