"""ArtifactStore on S3 or any S3-compatible server (MinIO, Ceph, R2), through aiobotocore.

Objects are `<prefix>/<agent>/<name>`, names checked exactly as on files. Small inputs are one
PutObject; once the stream passes one part (8 MiB) it becomes a multipart upload, so memory use
stays at one part however large the artifact. The sha256 and creation time ride in the
object's user metadata (`x-amz-meta-sha256`, `x-amz-meta-created-at`, `x-amz-meta-extra` as
JSON) and the content type in Content-Type. A multipart upload only knows its sha256 at the end,
so it is completed and then copied onto itself with the metadata (a server-side copy; objects
above 5 GiB, the CopyObject limit, keep the sha256 out of their metadata and say so in the log).
`ArtifactRef.url` is a presigned GET URL valid for `presign_ttl`. Credentials come from the
usual AWS chain (environment, ~/.aws, instance role) unless given explicitly.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from duragent.errors import DuragentError, InvalidName, ServiceUnavailable
from duragent.ids import check_name
from duragent.stores.base import ArtifactMeta, ArtifactNotFound, ArtifactRef, utcnow
from duragent.stores.filesystem.artifacts import check_artifact_name

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
CHUNK_SIZE = 64 * 1024
DEFAULT_PRESIGN_TTL = timedelta(hours=1)
#: CopyObject copies at most 5 GiB in one request.
_MAX_COPY_SIZE = 5 * 1024**3
#: HeadObject requests `list` runs at once to read metadata.
_HEAD_CONCURRENCY = 16
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Error(ServiceUnavailable):
    """The S3 server refused or failed a request (other than a missing object)."""


@dataclass(frozen=True)
class S3Timeouts:
    """How long one S3 request may take: seconds to connect, seconds of silence while reading,
    and how many times it is tried (botocore's standard retry mode, backoff included) before
    the call fails with S3Error. A hung server costs at most about
    `max_attempts * (connect + read)` plus the backoff."""

    connect: float = 5.0
    read: float = 30.0
    max_attempts: int = 3

    @property
    def deadline(self) -> float:
        """Longest one request may take, retries and backoff included: a request botocore's own
        timeouts do not cover (an upload waiting for `100 Continue` from a hung server) ends here."""
        return self.max_attempts * (self.connect + self.read + 2.0)


class S3ArtifactStore:
    """Artifacts in an S3 bucket under `prefix` (see the module docstring)."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        prefix: str = "",
        endpoint_url: str | None = None,
        presign_ttl: timedelta = DEFAULT_PRESIGN_TTL,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = PART_SIZE,
        timeouts: S3Timeouts | None = None,
    ):
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign_ttl = presign_ttl
        self._client_options: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._part_size = part_size
        self.timeouts = timeouts or S3Timeouts()
        self._client: Any = None
        self._exit_stack: AsyncExitStack | None = None
        self._opening = asyncio.Lock()

    # --- ArtifactStore --------------------------------------------------------------------

    async def put(
        self, agent_id: str, name: str, data: AsyncIterator[bytes], meta: ArtifactMeta
    ) -> ArtifactRef:
        """Stream `data` to `<prefix>/<agent>/<name>` (multipart beyond one part), replacing any older one."""
        key = self._key(agent_id, name)
        client = await self._get_client()
        hasher = hashlib.sha256()
        created_at = utcnow()
        first = await _read_at_least(data, self._part_size)
        hasher.update(first)
        if len(first) < self._part_size:
            size = len(first)
            metadata = _metadata(hasher.hexdigest(), created_at, meta.extra)
            await self._call(
                client.put_object(
                    Bucket=self.bucket, Key=key, Body=first, ContentType=meta.content_type, Metadata=metadata
                ),
                f"{agent_id}/{name}",
            )
        else:
            size = await self._multipart_upload(client, key, first, data, hasher, meta)
            await self._store_final_metadata(
                client, key, size, _metadata(hasher.hexdigest(), created_at, meta.extra), meta
            )
        stored = ArtifactMeta(
            content_type=meta.content_type,
            size=size,
            sha256=hasher.hexdigest(),
            created_at=created_at,
            extra=dict(meta.extra),
        )
        return ArtifactRef(id=f"{agent_id}/{name}", name=name, url=await self._presign(key), meta=stored)

    async def get(self, ref: ArtifactRef) -> AsyncGenerator[bytes, None]:
        """The artifact's bytes in 64 KiB chunks, streamed from S3; ArtifactNotFound when it is gone."""
        agent_id, name = _split_id(ref.id)
        key = self._key(agent_id, name)
        client = await self._get_client()
        response = await self._call(client.get_object(Bucket=self.bucket, Key=key), ref.id)
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_SIZE):
                yield chunk
        finally:
            body.close()

    async def list(self, agent_id: str, prefix: str = "", limit: int = 100) -> builtins.list[ArtifactRef]:
        """The agent's artifacts whose name starts with `prefix`, sorted by name, at most `limit`."""
        base = self._key_prefix(check_name(agent_id, "agent name"))
        if limit <= 0:
            return []
        client = await self._get_client()
        names: builtins.list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        with _translated(f"{agent_id}/{prefix}"):
            async for page in paginator.paginate(
                Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": min(limit, 1000)}
            ):
                for item in page.get("Contents", []):
                    name = item["Key"][len(base) :]
                    if _is_artifact_name(name):
                        names.append(name)
                if len(names) >= limit:
                    break
        names = sorted(names)[:limit]
        gate = asyncio.Semaphore(_HEAD_CONCURRENCY)

        async def describe(name: str) -> ArtifactRef | None:
            async with gate:
                return await self._describe(client, agent_id, name)

        refs = await asyncio.gather(*(describe(name) for name in names))
        return [ref for ref in refs if ref is not None]

    async def delete(self, ref: ArtifactRef) -> None:
        """Remove the object; ArtifactNotFound when absent (S3 itself would not say)."""
        agent_id, name = _split_id(ref.id)
        key = self._key(agent_id, name)
        client = await self._get_client()
        try:
            await self._call(client.head_object(Bucket=self.bucket, Key=key), ref.id)
        except ArtifactNotFound:
            # A HEAD answer has no body: a missing bucket is a bare 404 too. Ask about the bucket,
            # or a wrong `bucket` setting would read as "artifact not found".
            await self._check_bucket(client)
            raise
        await self._call(client.delete_object(Bucket=self.bucket, Key=key), ref.id)

    async def check(self) -> None:
        """S3Error when the bucket cannot be used: missing, refused to these credentials, unreachable."""
        await self._check_bucket(await self._get_client())

    async def close(self) -> None:
        """Close the S3 client and its connections."""
        stack, self._exit_stack, self._client = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()

    # --- keys -----------------------------------------------------------------------------

    def _key_prefix(self, agent_id: str) -> str:
        return f"{self.prefix}/{agent_id}/" if self.prefix else f"{agent_id}/"

    def _key(self, agent_id: str, name: str) -> str:
        check_name(agent_id, "agent name")
        return self._key_prefix(agent_id) + check_artifact_name(name)

    # --- internals ------------------------------------------------------------------------

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                session = _shared_session()
                stack = AsyncExitStack()
                options = {key: value for key, value in self._client_options.items() if value is not None}
                options["config"] = _client_config(
                    path_style=self._client_options["endpoint_url"] is not None, timeouts=self.timeouts
                )
                self._client = await stack.enter_async_context(session.create_client("s3", **options))
                self._exit_stack = stack
        return self._client

    async def _call(self, request: Awaitable[Any], what: str | None = None) -> Any:
        """One S3 request within the deadline (`S3Timeouts.deadline`), its errors as S3Error."""
        what = what or self.bucket
        try:
            async with asyncio.timeout(self.timeouts.deadline):
                with _translated(what):
                    return await request
        except TimeoutError as error:
            raise S3Error(
                f"S3 request for {what!r} failed: the S3 server did not answer in time"
                f" ({self.timeouts.deadline:g} s, retries included); check services.artifacts.endpoint_url"
                " and the server, or raise services.artifacts.read_timeout"
            ) from error

    async def _presign(self, key: str) -> str:
        client = await self._get_client()
        url: str = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=int(self.presign_ttl.total_seconds()),
        )
        return url

    async def _multipart_upload(
        self,
        client: Any,
        key: str,
        first: bytes,
        data: AsyncIterator[bytes],
        hasher: Any,
        meta: ArtifactMeta,
    ) -> int:
        """Upload `first` and the rest of `data` as parts; aborts the upload on any failure."""
        created = await self._call(
            client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=meta.content_type)
        )
        upload_id = created["UploadId"]
        parts: builtins.list[dict[str, Any]] = []
        size = 0
        try:
            part = first
            while part:
                number = len(parts) + 1
                response = await self._call(
                    client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                    )
                )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
                size += len(part)
                part = await _read_at_least(data, self._part_size)
                hasher.update(part)
            await self._call(
                client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            )
        except BaseException:
            await asyncio.shield(self._abort(client, key, upload_id))
            raise
        return size

    async def _abort(self, client: Any, key: str, upload_id: str) -> None:
        try:
            with _translated(key):
                await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (S3Error, ArtifactNotFound) as error:  # the upload's own failure is the one to report
            log.warning("could not abort multipart upload of %s: %s", key, error)

    async def _store_final_metadata(
        self, client: Any, key: str, size: int, metadata: dict[str, str], meta: ArtifactMeta
    ) -> None:
        """Copy the completed object onto itself with its sha256 (unknown when the upload began)."""
        if size > _MAX_COPY_SIZE:
            log.warning("%s is over 5 GiB: its sha256 is not stored in the object's metadata", key)
            return
        await self._call(
            client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                ContentType=meta.content_type,
                Metadata=metadata,
            )
        )

    async def _check_bucket(self, client: Any) -> None:
        """S3Error naming the bucket when it does not exist; nothing when it does."""
        try:
            await self._call(client.head_bucket(Bucket=self.bucket), self.bucket)
        except ArtifactNotFound as error:
            raise S3Error(
                f"S3 bucket {self.bucket!r} does not exist: create it, or check services.artifacts.bucket"
            ) from error

    async def _describe(self, client: Any, agent_id: str, name: str) -> ArtifactRef | None:
        """A listed object's ref from its HeadObject; None when it vanished meanwhile."""
        key = self._key(agent_id, name)
        try:
            head = await self._call(client.head_object(Bucket=self.bucket, Key=key), f"{agent_id}/{name}")
        except ArtifactNotFound:
            return None
        return ArtifactRef(
            id=f"{agent_id}/{name}", name=name, url=await self._presign(key), meta=_meta_of_head(head)
        )


# --- metadata -------------------------------------------------------------------------------


def _metadata(sha256: str, created_at: datetime, extra: dict[str, str]) -> dict[str, str]:
    """User metadata for an object; `extra` as ASCII JSON (S3 lower-cases metadata keys)."""
    metadata = {"sha256": sha256, "created-at": created_at.isoformat().replace("+00:00", "Z")}
    if extra:
        metadata["extra"] = json.dumps(extra, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return metadata


def _meta_of_head(head: dict[str, Any]) -> ArtifactMeta:
    """ArtifactMeta from a HeadObject response; objects put by other tools get what S3 knows."""
    metadata: dict[str, str] = head.get("Metadata") or {}
    created = metadata.get("created-at")
    created_at = (
        datetime.fromisoformat(created.replace("Z", "+00:00")) if created else head.get("LastModified")
    )
    try:
        extra_record = json.loads(metadata["extra"]) if "extra" in metadata else {}
    except json.JSONDecodeError:
        extra_record = {}
    extra = (
        {str(key): str(value) for key, value in extra_record.items()}
        if isinstance(extra_record, dict)
        else {}
    )
    return ArtifactMeta(
        content_type=head.get("ContentType") or "application/octet-stream",
        size=int(head["ContentLength"]),
        sha256=metadata.get("sha256"),
        created_at=created_at,
        extra=extra,
    )


# --- helpers of this module -------------------------------------------------------------------


async def _read_at_least(data: AsyncIterator[bytes], size: int) -> bytes:
    """Bytes from the stream until there are `size` of them or it ends (b"" at the end)."""
    buffer = bytearray()
    while len(buffer) < size:
        try:
            chunk = await anext(data)
        except StopAsyncIteration:
            break
        buffer += chunk
    return bytes(buffer)


def _split_id(artifact_id: str) -> tuple[str, str]:
    """`<agent>/<name>` -> (agent, name), both validated."""
    agent_id, _, name = artifact_id.partition("/")
    return check_name(agent_id, "agent name"), check_artifact_name(name)


def _is_artifact_name(name: str) -> bool:
    try:
        check_artifact_name(name)
    except InvalidName:
        return False
    return True


def _client_config(*, path_style: bool, timeouts: S3Timeouts) -> Any:
    """SigV4 everywhere (presigned URLs too); path-style keys for MinIO and other custom endpoints;
    a deadline on every request (connect and read timeouts, bounded retries)."""
    from aiobotocore.config import AioConfig

    s3_options = {"addressing_style": "path"} if path_style else {}
    return AioConfig(
        signature_version="s3v4",
        s3=s3_options,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        retries={"total_max_attempts": timeouts.max_attempts, "mode": "standard"},
    )


@functools.cache
def _shared_session() -> Any:
    """One aiobotocore session per process: it caches the S3 service model every client needs."""
    try:
        from aiobotocore.session import get_session
    except ImportError as error:
        raise DuragentError("the S3 backend needs aiobotocore: pip install 'duragent[s3]'") from error
    return get_session()


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn botocore's errors into ArtifactNotFound (a missing object) or S3Error (anything else)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND_CODES:
            raise ArtifactNotFound(f"artifact {what!r} not found") from error
        raise S3Error(f"S3 request for {what!r} failed: {error}") from error
    except (ConnectTimeoutError, ReadTimeoutError) as error:
        raise S3Error(
            f"S3 request for {what!r} failed: the S3 server did not answer in time, after every"
            f" retry ({error}); check services.artifacts.endpoint_url and the server, or raise"
            " services.artifacts.read_timeout"
        ) from error
    except EndpointConnectionError as error:
        # (connection refused, no route, a name that does not resolve: waiting longer would not help)
        raise S3Error(
            f"S3 request for {what!r} failed: the S3 server could not be reached, after every retry"
            f" ({error}); check services.artifacts.endpoint_url and that the server runs"
        ) from error
    except BotoCoreError as error:
        raise S3Error(f"S3 request for {what!r} failed: {error}") from error
