"""``otedama … | head``: a reader that goes away ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_stdout_pipe_ends_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write fails
    try:
        result = subprocess.run(
            [sys.executable, "-m", "otedama.cli", "config", "reference"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr.decode() == ""
    assert result.returncode == 1
