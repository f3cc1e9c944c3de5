"""Named fault points for atomicity drills (TC-PAY-009/301).

Disabled unless `TICKETING_FAULT_INJECTION` is set. Armed faults live in a small JSON
file guarded by an exclusive lock, so every worker process of one server sees them.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

KNOWN_POINTS = (
    "payment.before_apply",
    "tickets.after_first_ticket",
    "tickets.after_entitlements",
    "payment.before_record",
)


class InjectedFault(RuntimeError):
    """Raised at an armed fault point."""


class Faults:
    """Arms and trips fault points shared by all processes using one state file."""

    def __init__(self, enabled: bool, state_path: Path) -> None:
        self.enabled = enabled
        self.path = state_path

    def _update(self, change) -> dict[str, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            raw = fh.read()
            state = json.loads(raw) if raw.strip() else {}
            result = change(state)
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(state))
            fh.flush()
            os.fsync(fh.fileno())
            return result

    def arm(self, point: str, times: int = 1) -> None:
        """Make the next `times` passes through `point` fail."""
        self._update(lambda s: s.__setitem__(point, times))

    def clear(self) -> None:
        """Disarm every point."""
        self._update(lambda s: s.clear())

    def hit(self, point: str) -> None:
        """Raise InjectedFault if `point` is armed (a no-op when disabled)."""
        if not self.enabled or not self.path.exists():
            return

        def take(state: dict[str, int]) -> bool:
            left = state.get(point, 0)
            if left <= 0:
                return False
            state[point] = left - 1
            return True

        if self._update(take):
            raise InjectedFault(f"injected fault at {point}")


_faults = Faults(False, Path("var/faults.json"))


def configure_faults(enabled: bool, state_path: Path) -> Faults:
    """Set the process-wide fault registry (called by the app factory)."""
    global _faults
    _faults = Faults(enabled, state_path)
    return _faults


def faults() -> Faults:
    """The process-wide fault registry."""
    return _faults


def fault_point(point: str) -> None:
    """Trip `point` if armed; services call this at the steps drills target."""
    _faults.hit(point)
