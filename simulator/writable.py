"""Whether a run's outputs can be written, asked before the run (a run of minutes must not end unable
to save what it found)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def folder_problem(folder: Path) -> str | None:
    """Create `folder` and write and remove a probe file in it; the system's reason when that fails
    (naming the path that failed when it is not the folder), else None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".syncsim-probe-"):
            pass
    except OSError as exc:
        reason = "it is a file, not a folder" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != folder else ""
        return f"{reason}{where}"
    return None


def file_problem(path: Path) -> str | None:
    """Whether a file can be written at `path` (its folder is made and probed); the reason, else None."""
    if path.is_dir():
        return "it is a folder, not a file"
    return folder_problem(path.parent)
