"""Worker processes share one stderr: each JSON log line reaches it whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WRITER = """
import sys
from ticketing.kit.logging import configure_logging
import structlog
configure_logging("json", "INFO")
log = structlog.get_logger(component="test")
for n in range(int(sys.argv[1])):
    log.info("line", writer=sys.argv[2], n=n, pad="x" * 200)
"""


def test_lines_of_processes_sharing_stderr_are_never_interleaved(tmp_path: Path):
    out = tmp_path / "shared.log"
    lines = 3000
    with open(out, "ab") as shared:  # as a supervisor hands its workers one stderr
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(lines), name],
                                    stderr=shared, stdout=subprocess.DEVNULL)
                   for name in ("a", "b", "c")]
        for writer in writers:
            assert writer.wait(timeout=120) == 0
    seen = [json.loads(line) for line in out.read_text().splitlines()]  # each whole
    for name in ("a", "b", "c"):
        assert [x["n"] for x in seen if x["writer"] == name] == list(range(lines))
