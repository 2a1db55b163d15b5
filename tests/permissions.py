"""Running a command so that file permissions apply to it, also when the tests run as root."""

from __future__ import annotations

import os
import subprocess

import pytest


def where_permissions_apply(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions apply to it: as it is for a user; for root without the capabilities
    that override them (``setpriv``). Skips where root cannot drop them."""
    if os.geteuid() != 0:
        return argv
    caps = "-dac_override,-dac_read_search"
    setpriv = ["setpriv", "--bounding-set", caps, "--inh-caps", caps, "--"]
    try:
        subprocess.run([*setpriv, "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(
            f"running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here ({exc}): permissions would not apply"
        )
    return [*setpriv, *argv]
