"""Where a gateway plugin keeps files users sent until Duragent copies them into the artifact store.

The plugin downloads a file here and names it in the event's `metadata.file_path`; the router
stores it as an artifact when it handles the event, so files older than an hour are pruned.
Under `duragent serve` the folder is the server's (`DURAGENT_GATEWAY_DOWNLOADS`): the server
removes it once it has handled everything the plugin passed on, so a file announced just before
the plugin stops is still there when it is read. A plugin run on its own makes a temporary
folder and removes it when it stops.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Downloaded files older than this are removed (Duragent copies them on receipt).
RETENTION_SECONDS = 3600
#: The largest file downloaded unless the plugin's `max_download_mb` says otherwise: a plugin
#: holds a file in memory while it fetches it.
MAX_DOWNLOAD_MB = 100
#: Set by Duragent's manager: the folder it keeps for the plugin's downloads (and removes itself).
DOWNLOADS_ENV = "DURAGENT_GATEWAY_DOWNLOADS"


class DownloadFolder:
    """A folder for received files: the configured one, the server's, or a private temporary one."""

    def __init__(self, configured: str | None, *, prefix: str, environ: Mapping[str, str] | None = None):
        given = configured or (environ or {}).get(DOWNLOADS_ENV)
        if given:
            self.path = Path(given).expanduser()
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


def too_large(size: int | None, limit_mb: int) -> str | None:
    """Why a file of `size` bytes is not downloaded (over `limit_mb` MiB), or None if it may be."""
    if size is None or size <= limit_mb * 1024 * 1024:
        return None
    return f"the file is {size / (1024 * 1024):.1f} MB, over the {limit_mb} MB limit (`max_download_mb`)"


#: Why a file from a sender the server would not answer was not fetched. The server turns such a
#: message away; only someone admitted just as the file came (an allowlist changed) reads this.
NOT_ADMITTED = "it came before the bot's access rules let you in: please send it again"


def not_fetched(file_name: str, mime_type: str) -> dict[str, Any]:
    """The `metadata` of a file left unfetched because its sender is a stranger (see `Admission`)."""
    return {"file_name": file_name, "mime_type": mime_type, "download_error": NOT_ADMITTED}
