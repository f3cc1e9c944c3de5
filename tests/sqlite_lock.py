"""Another process holding, or probing, the writer lock of a SQLite file (ticketing.db)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Holds the writer lock of the SQLite file argv[1] until stdin closes.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1] + "-writer.lock", os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


class Holder:
    """A process that holds the writer lock until `release`."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()


@contextmanager
def writer_lock_held(path: Path) -> Iterator[Holder]:
    """The writer lock of `path`, held by another process until released or the block ends."""
    holder = Holder(path)
    try:
        yield holder
    finally:
        holder.proc.kill()
        holder.proc.wait()


def lock_is_free(path: Path) -> bool:
    """Whether another process could take the writer lock of `path` right now."""
    out = subprocess.run([sys.executable, "-c", (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1] + '-writer.lock', os.O_RDWR | os.O_CREAT)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(1)\n"), str(path)], timeout=30)
    return out.returncode == 0
