"""Multipart uploads: boto3's transfer manager on a 64 MB object (8 MB parts), and the
low-level calls (create, upload part, list parts, complete, abort) and their errors."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from support import error_code, http_status, s3_client

MB = 1024 * 1024


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


@pytest.fixture(scope="module")
def big():
    return os.urandom(64 * MB)


def test_transfer_manager_64mb(creds, backend, prefix, big, tmp_path):
    client = s3_client(creds, "listener", max_pool_connections=16)
    config = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB,
                            max_concurrency=4)
    key = prefix + "big/blob.bin"
    client.upload_fileobj(io.BytesIO(big), backend, key, Config=config,
                          ExtraArgs={"ContentType": "application/x-test"})

    head = client.head_object(Bucket=backend, Key=key)
    assert head["ContentLength"] == len(big)
    assert head["ETag"] == multipart_etag([big[i:i + 8 * MB] for i in range(0, len(big), 8 * MB)])
    assert head["ContentType"] == "application/x-test"

    # The transfer manager downloads with parallel ranged GETs.
    out = tmp_path / "blob.bin"
    client.download_file(backend, key, str(out), Config=config)
    assert out.stat().st_size == len(big)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big).digest()

    # A range that spans a part boundary.
    r = client.get_object(Bucket=backend, Key=key, Range=f"bytes={8 * MB - 10}-{8 * MB + 9}")
    assert r["Body"].read() == big[8 * MB - 10:8 * MB + 10]
    client.delete_object(Bucket=backend, Key=key)


def test_multipart_calls(client, backend, prefix):
    key = prefix + "parts/assembled.bin"
    parts = [os.urandom(5 * MB), os.urandom(5 * MB), os.urandom(123_457)]
    up = client.create_multipart_upload(Bucket=backend, Key=key, ContentType="text/x-parts")
    upload_id = up["UploadId"]
    assert up["Key"] == key and up["Bucket"] == backend

    # Out of order on purpose.
    etags = {}
    for n in (3, 1, 2):
        etags[n] = client.upload_part(Bucket=backend, Key=key, UploadId=upload_id,
                                      PartNumber=n, Body=parts[n - 1])["ETag"]
        assert etags[n] == f'"{hashlib.md5(parts[n - 1]).hexdigest()}"'
    # Re-uploading a part replaces it.
    client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=2,
                       Body=parts[1])

    listed = client.list_parts(Bucket=backend, Key=key, UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == [
        (n, len(parts[n - 1]), etags[n]) for n in (1, 2, 3)]

    # The object does not exist until completed.
    with pytest.raises(ClientError) as e:
        client.head_object(Bucket=backend, Key=key)
    assert http_status(e.value) == 404

    done = client.complete_multipart_upload(
        Bucket=backend, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]})
    assert done["ETag"] == multipart_etag(parts)
    got = client.get_object(Bucket=backend, Key=key)
    assert got["Body"].read() == b"".join(parts)
    assert got["ContentType"] == "text/x-parts"
    assert got["ETag"] == multipart_etag(parts)

    # The upload is gone once completed.
    with pytest.raises(ClientError) as e:
        client.list_parts(Bucket=backend, Key=key, UploadId=upload_id)
    assert error_code(e.value) == "NoSuchUpload"


def test_upload_part_checks_content_md5_and_answers_it_as_the_etag(client, backend, prefix):
    key = prefix + "parts/md5.bin"
    upload_id = client.create_multipart_upload(Bucket=backend, Key=key)["UploadId"]
    part = os.urandom(300_000)
    md5 = base64.b64encode(hashlib.md5(part).digest()).decode()
    got = client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=1,
                             Body=part, ContentMD5=md5)
    assert got["ETag"] == '"%s"' % hashlib.md5(part).hexdigest()
    with pytest.raises(ClientError) as e:
        client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=2,
                           Body=part[1:] + b"!", ContentMD5=md5)
    assert (http_status(e.value), error_code(e.value)) == (400, "BadDigest")
    listed = client.list_parts(Bucket=backend, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, got["ETag"])]
    client.abort_multipart_upload(Bucket=backend, Key=key, UploadId=upload_id)


def test_multipart_abort_and_errors(client, backend, prefix):
    key = prefix + "parts/aborted.bin"
    upload_id = client.create_multipart_upload(Bucket=backend, Key=key)["UploadId"]
    etag = client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=1,
                              Body=b"x" * 1000)["ETag"]

    # Completing with a part that was never uploaded, or a wrong ETag: InvalidPart.
    with pytest.raises(ClientError) as e:
        client.complete_multipart_upload(
            Bucket=backend, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag},
                                       {"PartNumber": 2, "ETag": etag}]})
    assert error_code(e.value) == "InvalidPart"
    with pytest.raises(ClientError) as e:
        client.complete_multipart_upload(
            Bucket=backend, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0123456789abcdef"'}]})
    assert error_code(e.value) == "InvalidPart"

    client.abort_multipart_upload(Bucket=backend, Key=key, UploadId=upload_id)
    for call in (
        lambda: client.list_parts(Bucket=backend, Key=key, UploadId=upload_id),
        lambda: client.abort_multipart_upload(Bucket=backend, Key=key, UploadId=upload_id),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "NoSuchUpload", e.value.response
        assert http_status(e.value) == 404
    # UploadPart and CompleteMultipartUpload on an upload that is gone: moto_server itself
    # answers 500 there (a KeyError inside moto; Larder's SDK then retries for seconds), so
    # only `local` can show S3's answer.
    calls = (
        lambda: client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=2,
                                   Body=b"y"),
        lambda: client.complete_multipart_upload(
            Bucket=backend, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}),
    )
    for call in calls if backend == "local" else ():
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "NoSuchUpload", e.value.response
    with pytest.raises(ClientError) as e:
        client.head_object(Bucket=backend, Key=key)
    assert http_status(e.value) == 404

    # An upload id that never existed.
    with pytest.raises(ClientError) as e:
        client.list_parts(Bucket=backend, Key=key, UploadId="no-such-upload")
    assert error_code(e.value) == "NoSuchUpload"
    # Part numbers are 1..10000.
    with pytest.raises(ClientError) as e:
        client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=10001,
                           Body=b"z")
    assert http_status(e.value) == 400


def test_multipart_if_none_match_on_complete(client, backend, prefix):
    key = prefix + "parts/once.bin"
    client.put_object(Bucket=backend, Key=key, Body=b"already here")
    upload_id = client.create_multipart_upload(Bucket=backend, Key=key)["UploadId"]
    etag = client.upload_part(Bucket=backend, Key=key, UploadId=upload_id, PartNumber=1,
                              Body=b"new")["ETag"]
    with pytest.raises(ClientError) as e:
        client.complete_multipart_upload(
            Bucket=backend, Key=key, UploadId=upload_id, IfNoneMatch="*",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert http_status(e.value) == 412
    assert client.get_object(Bucket=backend, Key=key)["Body"].read() == b"already here"
    client.abort_multipart_upload(Bucket=backend, Key=key, UploadId=upload_id)
