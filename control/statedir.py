"""Where semroute keeps what outlives a process (feedback, stored responses): one directory.

$SEMROUTE_STATE_DIR, else $XDG_STATE_HOME/semroute, else ~/.local/state/semroute.
"""
from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    if os.environ.get("SEMROUTE_STATE_DIR"):
        return Path(os.environ["SEMROUTE_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "semroute"
