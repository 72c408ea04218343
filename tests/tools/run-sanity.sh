#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of the collection placed where ansible-test
# wants it (ansible_collections/selfhost/backup). Extra arguments go to ansible-test.
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-${VENV:-$top/.venv}/bin/python}"
ansible_test="$(dirname "$python")/ansible-test"

# ansible-test downloads get-pip.py for the pip version it pins; serve it an
# offline stand-in under the cache name it looks for.
pip_version=$("$python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages)).group(1))
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
install -m 0644 "$top/tests/tools/get_pip_standin.py" "$cache/get_pip_${pip_version//./_}.py"

# Outside the checkout: inside it, ansible-test would list files with git and
# find none (the copy is git-ignored).
work="${SANITY_WORKDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/selfhost-backup/sanity}"
dest="$work/ansible_collections/selfhost/backup"
mkdir -p "$dest"
# A fresh copy of the files git tracks or would track (no venvs or caches), but
# keep tests/output between runs so ansible-test reuses its sanity venvs.
find "$dest" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$dest/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} + 2>/dev/null || true
(cd "$top" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf -) | tar -C "$dest" -xf -
cd "$dest"
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
exec "$ansible_test" sanity --venv --python "$py_version" "$@"
