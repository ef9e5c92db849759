"""Is a process still there?  One answer for every watcher (GCS and raylet
watching their driver, the raylet its drivers, the launcher its nodes,
`zray memory` the processes it asked)."""
from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):   # no /proc here: kill(0) said it exists
        return True
