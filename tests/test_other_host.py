"""The app in a second host project with differently named models (see tests/otherhost/)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_other_host_project_trains_and_serves():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.otherhost.settings"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ds=tests.otherhost.settings",
         "tests/otherhost/test_host.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
