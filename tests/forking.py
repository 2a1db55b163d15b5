"""Waiting for a forked child that may hang."""

from __future__ import annotations

import os
import signal
import time


def exit_code_within(pid: int, seconds: float) -> int | None:
    """The exit code of child ``pid`` once it ends, or None (the child killed) where it ran past ``seconds``."""
    deadline = time.monotonic() + seconds
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.waitstatus_to_exitcode(done[1])
