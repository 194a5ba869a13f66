"""ArtifactStore on plain files: `<agent>/<name>` holds the bytes, `<agent>/.meta/<name>.json` the metadata.

Names may have `/` folders (`reports/2026/summary.pdf`). Every component must start with a letter,
digit, `_` or `-` and contain only those and `.`: so no `..`, no absolute paths, no hidden files,
and nothing can reach the `.meta` folder or the hidden temp files used while writing.
Bytes are streamed in and out in chunks; a put becomes visible only when complete (temp file,
fsync, rename).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from duragent.errors import InvalidName
from duragent.ids import check_name, ulid
from duragent.keyed_locks import KeyedLocks
from duragent.stores.base import (
    ArtifactMeta,
    ArtifactNotFound,
    ArtifactRef,
    Change,
    ChangeListener,
    ignore_changes,
    utcnow,
)

CHUNK_SIZE = 64 * 1024
META_DIR = ".meta"
_MAX_PART_LENGTH = 128
_NAME_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_MAX_NAME_LENGTH = 1024
_MAX_DEPTH = 16


def check_artifact_name(name: str) -> str:
    """Return `name` if every `/`-separated component is a safe, visible file name, else raise
    InvalidName saying which rule it breaks (characters, a length limit, the depth)."""
    if not isinstance(name, str) or not name:
        raise InvalidName("invalid artifact name: it is empty")
    components = name.split("/")
    shown = repr(name) if len(name) <= 80 else repr(name[:60] + "…")
    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidName(
            f"invalid artifact name {shown}: {len(name)} characters, the limit is {_MAX_NAME_LENGTH}"
        )
    if len(components) > _MAX_DEPTH:
        raise InvalidName(
            f"invalid artifact name {shown}: {len(components)} '/'-separated parts, the limit is {_MAX_DEPTH}"
        )
    long_part = next((c for c in components if len(c) > _MAX_PART_LENGTH), None)
    if long_part is not None:
        raise InvalidName(
            f"invalid artifact name {shown}: a part is {len(long_part)} characters long, the limit for"
            f" each '/'-separated part is {_MAX_PART_LENGTH}"
        )
    if not all(_NAME_COMPONENT.fullmatch(component) for component in components):
        raise InvalidName(
            f"invalid artifact name {shown}: use '/'-separated parts of letters, digits, '.', '-' or '_',"
            " each starting with a letter, digit, '-' or '_' (no '..', no leading '/', no hidden files)"
        )
    return name


class FilesystemArtifactStore:
    """The default ArtifactStore: files under the data directory's `artifacts/`."""

    def __init__(self, root: Path, *, on_change: ChangeListener = ignore_changes):
        self.root = root
        self._on_change = on_change
        self._name_locks: KeyedLocks[Path] = KeyedLocks()

    async def put(
        self, agent_id: str, name: str, data: AsyncIterator[bytes], meta: ArtifactMeta
    ) -> ArtifactRef:
        """Stream `data` into `<agent>/<name>`, computing size and sha256; replaces an older version."""
        path, meta_path = self._paths(agent_id, name)
        temp = await asyncio.to_thread(_open_temp_beside, path)
        temp_path = Path(temp.name)
        hasher = hashlib.sha256()
        size = 0
        try:
            async for chunk in data:
                size += len(chunk)
                await asyncio.to_thread(_write_chunk, temp, hasher, chunk)
            await asyncio.to_thread(_finish_file, temp)
            stored = ArtifactMeta(
                content_type=meta.content_type,
                size=size,
                sha256=hasher.hexdigest(),
                created_at=utcnow(),
                extra=dict(meta.extra),
            )
            async with self._name_locks(path):
                replaced = await asyncio.to_thread(_publish, temp_path, path, meta_path, stored, name)
        finally:
            await asyncio.to_thread(_discard, temp, temp_path)
        summary = f"{name} {'replaced' if replaced else 'added'}"
        self._on_change(Change(paths=(path, meta_path), kind="artifact", subject=agent_id, summary=summary))
        return ArtifactRef(id=f"{agent_id}/{name}", name=name, url=None, meta=stored)

    async def get(self, ref: ArtifactRef) -> AsyncGenerator[bytes, None]:
        """The artifact's bytes in 64 KiB chunks; ArtifactNotFound when it is gone."""
        agent_id, name = _split_id(ref.id)
        path, _meta_path = self._paths(agent_id, name)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
            raise ArtifactNotFound(f"artifact {ref.id!r} not found") from error
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
                yield chunk
        finally:
            handle.close()

    async def list(self, agent_id: str, prefix: str = "", limit: int = 100) -> list[ArtifactRef]:
        """The agent's artifacts whose name starts with `prefix`, sorted by name, at most `limit`."""
        agent_dir = self.root / check_name(agent_id, "agent name")
        names = await asyncio.to_thread(_artifact_names, agent_dir, prefix)
        selected = names[: max(limit, 0)]
        metas = await asyncio.to_thread(lambda: [_read_meta(agent_dir, name) for name in selected])
        return [
            ArtifactRef(id=f"{agent_id}/{name}", name=name, url=None, meta=meta)
            for name, meta in zip(selected, metas, strict=True)
            if meta is not None
        ]

    async def delete(self, ref: ArtifactRef) -> None:
        """Remove the artifact and its metadata (and folders left empty); ArtifactNotFound when absent."""
        agent_id, name = _split_id(ref.id)
        path, meta_path = self._paths(agent_id, name)
        async with self._name_locks(path):
            removed = await asyncio.to_thread(_remove, self.root / agent_id, path, meta_path)
        if not removed:
            raise ArtifactNotFound(f"artifact {ref.id!r} not found")
        self._on_change(
            Change(paths=(path, meta_path), kind="artifact", subject=agent_id, summary=f"{name} deleted")
        )

    async def close(self) -> None:
        """Nothing to release: files are opened and closed per operation."""

    def _paths(self, agent_id: str, name: str) -> tuple[Path, Path]:
        agent_dir = self.root / check_name(agent_id, "agent name")
        check_artifact_name(name)
        return agent_dir / name, agent_dir / META_DIR / f"{name}.json"


def _split_id(artifact_id: str) -> tuple[str, str]:
    """`<agent>/<name>` -> (agent, name), both validated."""
    agent_id, _, name = artifact_id.partition("/")
    return check_name(agent_id, "agent name"), check_artifact_name(name)


def _open_temp_beside(path: Path) -> IO[bytes]:
    """A hidden temp file in the artifact's own folder, so the final rename stays on one filesystem."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise InvalidName(f"artifact name {path.name!r}: a parent folder is already an artifact") from error
    return open(path.with_name(f".{path.name}.{ulid()}.tmp"), "xb")


def _discard(handle: IO[bytes], temp_path: Path) -> None:
    """Close the temp file and remove it unless it was renamed into place."""
    handle.close()
    temp_path.unlink(missing_ok=True)


def _write_chunk(handle: IO[bytes], hasher: Any, chunk: bytes) -> None:
    hasher.update(chunk)
    handle.write(chunk)


def _finish_file(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _publish(temp_path: Path, path: Path, meta_path: Path, meta: ArtifactMeta, name: str) -> bool:
    """Rename the finished temp file into place and write its sidecar; True when it replaced one."""
    if path.is_dir():
        raise InvalidName(f"artifact name {name!r} is a folder of other artifacts")
    replaced = path.exists()
    os.replace(temp_path, path)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_temp = meta_path.with_name(f".{meta_path.name}.{ulid()}.tmp")
    try:
        meta_temp.write_text(json.dumps(_meta_record(meta), indent=2) + "\n", encoding="utf-8")
        os.replace(meta_temp, meta_path)
    finally:
        meta_temp.unlink(missing_ok=True)
    return replaced


def _meta_record(meta: ArtifactMeta) -> dict[str, Any]:
    return {
        "content_type": meta.content_type,
        "size": meta.size,
        "sha256": meta.sha256,
        "created_at": meta.created_at.isoformat().replace("+00:00", "Z") if meta.created_at else None,
        "extra": meta.extra,
    }


def _read_meta(agent_dir: Path, name: str) -> ArtifactMeta | None:
    """The sidecar's metadata; a file without one (copied in by hand) gets its size only.

    None when the artifact vanished meanwhile.
    """
    try:
        size = (agent_dir / name).stat().st_size
    except FileNotFoundError:
        return None
    try:
        record = json.loads((agent_dir / META_DIR / f"{name}.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return ArtifactMeta(size=size)
    created = record.get("created_at")
    return ArtifactMeta(
        content_type=str(record.get("content_type") or "application/octet-stream"),
        size=size,
        sha256=record.get("sha256"),
        created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        extra={str(key): str(value) for key, value in (record.get("extra") or {}).items()},
    )


def _artifact_names(agent_dir: Path, prefix: str) -> list[str]:
    """Names of the visible files under the agent's folder starting with `prefix`, sorted."""
    names: list[str] = []
    for directory, subdirs, files in os.walk(agent_dir):
        relative = Path(directory).relative_to(agent_dir).as_posix()
        base = "" if relative == "." else f"{relative}/"
        # Skip hidden folders (.meta) and folders that cannot contain a match for the prefix.
        subdirs[:] = [
            sub for sub in subdirs if not sub.startswith(".") and _may_match(f"{base}{sub}/", prefix)
        ]
        for file in files:
            name = f"{base}{file}"
            if not file.startswith(".") and name.startswith(prefix):
                names.append(name)
    return sorted(names)


def _may_match(folder: str, prefix: str) -> bool:
    """Whether names inside `folder` (ending in "/") can start with `prefix`."""
    return folder.startswith(prefix) or prefix.startswith(folder)


def _remove(agent_dir: Path, path: Path, meta_path: Path) -> bool:
    """Delete the artifact and sidecar, then folders left empty; False when there was nothing."""
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    meta_path.unlink(missing_ok=True)
    for start, stop in ((path.parent, agent_dir), (meta_path.parent, agent_dir)):
        _remove_empty_folders(start, stop)
    return True


def _remove_empty_folders(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone): the folders above are needed too
            return
        folder = folder.parent
