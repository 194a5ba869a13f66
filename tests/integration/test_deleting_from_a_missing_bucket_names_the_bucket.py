"""S3: deleting an artifact when the configured bucket does not exist says so, not "artifact not found"."""

from __future__ import annotations

import pytest

from duragent.stores.base import ArtifactMeta, ArtifactNotFound, ArtifactRef
from duragent.stores.s3 import S3ArtifactStore, S3Error
from duragent.testing.s3 import MotoS3Server, moto_s3  # noqa: F401  (the moto_s3 fixture)


async def test_delete_in_a_bucket_that_does_not_exist_names_the_bucket(moto_s3: MotoS3Server) -> None:  # noqa: F811
    store = S3ArtifactStore("no-such-bucket-here", **moto_s3.client_options())
    try:
        with pytest.raises(S3Error, match="bucket 'no-such-bucket-here' does not exist"):
            await store.delete(ArtifactRef(id="assistant/a.txt", name="a.txt", url=None, meta=ArtifactMeta()))
    finally:
        await store.close()


async def test_delete_of_a_missing_artifact_in_an_existing_bucket_is_not_found(
    moto_s3: MotoS3Server,  # noqa: F811
) -> None:
    store = S3ArtifactStore(moto_s3.create_bucket(), **moto_s3.client_options())
    try:
        with pytest.raises(ArtifactNotFound):
            await store.delete(ArtifactRef(id="assistant/a.txt", name="a.txt", url=None, meta=ArtifactMeta()))
    finally:
        await store.close()
