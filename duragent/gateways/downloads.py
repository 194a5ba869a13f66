"""Where a gateway plugin keeps files users sent until Duragent copies them into the artifact store.

The plugin downloads a file here and names it in the event's `metadata.file_path`; the router
stores it as an artifact on receipt, so files older than an hour are pruned, and a folder the
plugin created for itself is removed when it stops.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from pathlib import Path

#: Downloaded files older than this are removed (Duragent copies them on receipt).
RETENTION_SECONDS = 3600


class DownloadFolder:
    """A folder for received files: the configured one, or a private temporary one."""

    def __init__(self, configured: str | None, *, prefix: str):
        if configured:
            self.path = Path(configured).expanduser()
            self.path.mkdir(parents=True, exist_ok=True)
            self._owned = False
        else:
            self.path = Path(tempfile.mkdtemp(prefix=prefix))
            self._owned = True

    def new_file(self, name: str) -> Path:
        """A fresh path for a file called `name` (old files are pruned first)."""
        self.prune()
        return self.path / f"{secrets.token_hex(8)}-{Path(name).name or 'file'}"

    def prune(self) -> None:
        """Remove files older than the retention time."""
        horizon = time.time() - RETENTION_SECONDS
        for path in self.path.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < horizon:
                    path.unlink()

    def close(self) -> None:
        """Remove the folder if the plugin made it for itself."""
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)
