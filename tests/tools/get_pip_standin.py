"""Offline stand-in for the get-pip.py script that ansible-test downloads.

ansible-test bootstraps pip into each sanity venv with a get-pip.py it fetches
from the internet, which this machine cannot reach. This stand-in installs the
interpreter's bundled pip with ensurepip and then installs what ansible-test
asked for through the machine's normal pip configuration.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys

# get-pip.py options that `pip install` does not understand.
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    ensurepip.bootstrap()
    # ensurepip leaves PIP_CONFIG_FILE=/dev/null behind; the next pip would then
    # ignore the machine's pip configuration (index and certificates).
    os.environ.pop("PIP_CONFIG_FILE", None)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    return subprocess.call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    sys.exit(main())
