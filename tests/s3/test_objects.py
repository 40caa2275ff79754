"""Object operations with boto3, on both mounts of the proxy (the dedicated listener and `/s3`
on the main origin) and both backends (`local`, `s3` on moto_server)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import urllib.parse

import pytest
from botocore.exceptions import ClientError

from support import error_code, http_status, list_keys


def test_list_buckets_and_bucket_location(client, backend):
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert "local" in names
    assert backend in names
    client.head_bucket(Bucket=backend)
    loc = client.get_bucket_location(Bucket=backend)
    assert loc["LocationConstraint"] in (None, "", "us-east-1")
    with pytest.raises(ClientError) as e:
        client.head_bucket(Bucket="no-such-backend")
    assert http_status(e.value) == 404


def test_put_get_head_delete(client, backend, prefix):
    key = prefix + "hello.txt"
    body = b"hello, larder\n" * 100
    put = client.put_object(Bucket=backend, Key=key, Body=body)
    etag = put["ETag"]
    assert etag == f'"{hashlib.md5(body).hexdigest()}"'

    got = client.get_object(Bucket=backend, Key=key)
    assert got["Body"].read() == body
    assert got["ETag"] == etag
    assert got["ContentLength"] == len(body)

    head = client.head_object(Bucket=backend, Key=key)
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == etag
    assert head["AcceptRanges"] == "bytes"
    assert isinstance(head["LastModified"], dt.datetime)

    # Overwrite replaces.
    client.put_object(Bucket=backend, Key=key, Body=b"v2")
    assert client.get_object(Bucket=backend, Key=key)["Body"].read() == b"v2"

    client.delete_object(Bucket=backend, Key=key)
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key)
    assert error_code(e.value) == "NoSuchKey" and http_status(e.value) == 404
    with pytest.raises(ClientError) as e:
        client.head_object(Bucket=backend, Key=key)
    assert http_status(e.value) == 404
    # Deleting what is not there succeeds, as on S3.
    client.delete_object(Bucket=backend, Key=key)


def test_empty_object(client, backend, prefix):
    key = prefix + "empty"
    put = client.put_object(Bucket=backend, Key=key, Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = client.get_object(Bucket=backend, Key=key)
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0


def test_ranged_get(client, backend, prefix):
    key = prefix + "digits"
    body = bytes(range(256)) * 40  # 10,240 bytes
    client.put_object(Bucket=backend, Key=key, Body=body)
    size = len(body)

    r = client.get_object(Bucket=backend, Key=key, Range="bytes=100-199")
    assert r["Body"].read() == body[100:200]
    assert r["ContentRange"] == f"bytes 100-199/{size}"
    assert r["ContentLength"] == 100
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206

    r = client.get_object(Bucket=backend, Key=key, Range="bytes=10000-")
    assert r["Body"].read() == body[10000:]
    assert r["ContentRange"] == f"bytes 10000-{size - 1}/{size}"

    # Suffix: the last 300 bytes.
    r = client.get_object(Bucket=backend, Key=key, Range="bytes=-300")
    assert r["Body"].read() == body[-300:]
    assert r["ContentRange"] == f"bytes {size - 300}-{size - 1}/{size}"

    # A suffix longer than the object is the whole object.
    r = client.get_object(Bucket=backend, Key=key, Range=f"bytes=-{size * 2}")
    assert r["Body"].read() == body

    # An end past the object is clamped.
    r = client.get_object(Bucket=backend, Key=key, Range=f"bytes={size - 5}-{size + 100}")
    assert r["Body"].read() == body[-5:]

    r = client.head_object(Bucket=backend, Key=key, Range="bytes=0-9")
    assert r["ContentLength"] == 10
    assert r["ContentRange"] == f"bytes 0-9/{size}"

    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key, Range=f"bytes={size}-")
    assert http_status(e.value) == 416
    assert error_code(e.value) == "InvalidRange"
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key, Range=f"bytes={size + 10}-{size + 20}")
    assert http_status(e.value) == 416
    assert error_code(e.value) == "InvalidRange"


def test_conditional_get(client, backend, prefix):
    key = prefix + "cond.txt"
    etag = client.put_object(Bucket=backend, Key=key, Body=b"conditional")["ETag"]
    head = client.head_object(Bucket=backend, Key=key)
    last_modified = head["LastModified"]

    # If-None-Match with the current ETag: 304.
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key, IfNoneMatch=etag)
    assert http_status(e.value) == 304
    # ... and with a different one: the object.
    got = client.get_object(Bucket=backend, Key=key, IfNoneMatch='"0123456789abcdef"')
    assert got["Body"].read() == b"conditional"

    # If-Match with the ETag: the object; with another: 412.
    got = client.get_object(Bucket=backend, Key=key, IfMatch=etag)
    assert got["Body"].read() == b"conditional"
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key, IfMatch='"0123456789abcdef"')
    assert http_status(e.value) == 412
    assert error_code(e.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        client.head_object(Bucket=backend, Key=key, IfMatch='"0123456789abcdef"')
    assert http_status(e.value) == 412

    # Dates.
    later = last_modified + dt.timedelta(hours=1)
    earlier = last_modified - dt.timedelta(hours=1)
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key, IfModifiedSince=later)
    assert http_status(e.value) == 304
    assert client.get_object(Bucket=backend, Key=key,
                             IfModifiedSince=earlier)["Body"].read() == b"conditional"
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=key, IfUnmodifiedSince=earlier)
    assert http_status(e.value) == 412
    assert client.get_object(Bucket=backend, Key=key,
                             IfUnmodifiedSince=later)["Body"].read() == b"conditional"

    # A range under a passing precondition still ranges.
    got = client.get_object(Bucket=backend, Key=key, IfMatch=etag, Range="bytes=0-3")
    assert got["Body"].read() == b"cond"


def test_conditional_put(client, backend, prefix):
    key = prefix + "once.txt"
    client.put_object(Bucket=backend, Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=backend, Key=key, Body=b"second", IfNoneMatch="*")
    assert http_status(e.value) == 412
    assert error_code(e.value) == "PreconditionFailed"
    assert client.get_object(Bucket=backend, Key=key)["Body"].read() == b"first"

    etag = client.head_object(Bucket=backend, Key=key)["ETag"]
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=backend, Key=key, Body=b"third", IfMatch='"0123456789abcdef"')
    assert http_status(e.value) == 412
    assert client.get_object(Bucket=backend, Key=key)["Body"].read() == b"first"
    client.put_object(Bucket=backend, Key=key, Body=b"fourth", IfMatch=etag)
    assert client.get_object(Bucket=backend, Key=key)["Body"].read() == b"fourth"


def test_put_integrity_headers(client, backend, prefix):
    body = os.urandom(4096)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    put = client.put_object(Bucket=backend, Key=prefix + "md5", Body=body, ContentMD5=md5)
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    assert client.get_object(Bucket=backend, Key=prefix + "md5")["Body"].read() == body

    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    client.put_object(Bucket=backend, Key=prefix + "sha256", Body=body, ChecksumSHA256=sha)
    assert client.get_object(Bucket=backend, Key=prefix + "sha256")["Body"].read() == body
    for algo in ("CRC32", "SHA1", "SHA256"):
        client.put_object(Bucket=backend, Key=prefix + algo, Body=body, ChecksumAlgorithm=algo)
        assert client.get_object(Bucket=backend, Key=prefix + algo)["Body"].read() == body


def test_put_with_wrong_content_md5_is_bad_digest(client, backend, prefix):
    body = os.urandom(4096)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=backend, Key=prefix + "bad-md5", Body=body, ContentMD5=wrong)
    assert (http_status(e.value), error_code(e.value)) == (400, "BadDigest")
    with pytest.raises(ClientError):
        client.head_object(Bucket=backend, Key=prefix + "bad-md5")


def test_put_with_wrong_checksum_is_refused(client, backend, prefix):
    body = os.urandom(4096)
    bad_sha = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=backend, Key=prefix + "bad-sha", Body=body,
                          ChecksumSHA256=bad_sha)
    assert http_status(e.value) == 400
    assert error_code(e.value) in ("BadDigest", "XAmzContentChecksumMismatch")
    with pytest.raises(ClientError):
        client.head_object(Bucket=backend, Key=prefix + "bad-sha")


def test_copy(client, backend, prefix):
    src = prefix + "src/data.csv"
    body = b"a,b\n1,2\n"
    etag = client.put_object(Bucket=backend, Key=src, Body=body, ContentType="text/csv")["ETag"]
    res = client.copy_object(Bucket=backend, Key=prefix + "dst/copy.csv",
                             CopySource={"Bucket": backend, "Key": src})
    assert res["CopyObjectResult"]["ETag"] == etag
    got = client.get_object(Bucket=backend, Key=prefix + "dst/copy.csv")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/csv"
    # The source is untouched.
    assert client.get_object(Bucket=backend, Key=src)["Body"].read() == body

    # A source key that needs encoding.
    odd = prefix + "src/a b+c=d ü.csv"
    client.put_object(Bucket=backend, Key=odd, Body=b"odd")
    client.copy_object(Bucket=backend, Key=prefix + "dst/odd",
                       CopySource={"Bucket": backend, "Key": odd})
    assert client.get_object(Bucket=backend, Key=prefix + "dst/odd")["Body"].read() == b"odd"

    with pytest.raises(ClientError) as e:
        client.copy_object(Bucket=backend, Key=prefix + "dst/none",
                           CopySource={"Bucket": backend, "Key": prefix + "missing"})
    assert error_code(e.value) == "NoSuchKey"


def test_copy_between_backends_is_refused(client, moto_backend, prefix):
    client.put_object(Bucket="local", Key=prefix + "x", Body=b"x")
    with pytest.raises(ClientError) as e:
        client.copy_object(Bucket=moto_backend, Key=prefix + "x",
                           CopySource={"Bucket": "local", "Key": prefix + "x"})
    assert http_status(e.value) in (400, 403, 501)
    with pytest.raises(ClientError):
        client.head_object(Bucket=moto_backend, Key=prefix + "x")


@pytest.mark.parametrize("content_type", [
    "text/csv",
    "application/vnd.apache.parquet",
    "application/json; charset=utf-8",
])
def test_content_type_round_trip(client, backend, prefix, content_type):
    key = prefix + "typed"
    client.put_object(Bucket=backend, Key=key, Body=b"{}", ContentType=content_type)
    assert client.head_object(Bucket=backend, Key=key)["ContentType"] == content_type
    assert client.get_object(Bucket=backend, Key=key)["ContentType"] == content_type


def test_default_content_type(client, backend, prefix):
    key = prefix + "untyped"
    client.put_object(Bucket=backend, Key=key, Body=b"x")
    assert client.head_object(Bucket=backend, Key=key)["ContentType"] in (
        "binary/octet-stream", "application/octet-stream")


ODD_KEYS = [
    "with space.txt",
    "plus+sign.txt",
    "equals=sign.txt",
    "a+b=c d.txt",
    "ünïcødé/日本語/файл.csv",
    "emoji-🥫.json",
    "percent%20literal.txt",
    "question?mark.txt",
    "hash#tag.txt",
    "amp&ersand;semi.txt",
    "tilde~and'quote\".txt",
    "dir with space/sub+dir/x=1/leaf",
]


def test_keys_needing_encoding(client, backend, prefix):
    for i, name in enumerate(ODD_KEYS):
        key = prefix + name
        body = f"{i}:{name}".encode()
        client.put_object(Bucket=backend, Key=key, Body=body)
        assert client.get_object(Bucket=backend, Key=key)["Body"].read() == body, key
        assert client.head_object(Bucket=backend, Key=key)["ContentLength"] == len(body)
    listed = list_keys(client, backend, prefix)
    assert sorted(listed) == sorted(prefix + k for k in ODD_KEYS)
    # Asked for explicitly, encoding-type=url is left to the caller to decode (boto3 decodes
    # only when it chose the encoding itself, as it did for the listing above).
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, EncodingType="url")
    raw = [o["Key"] for o in res["Contents"]]
    assert all(k.isascii() and " " not in k for k in raw), raw
    assert sorted(urllib.parse.unquote_plus(k) for k in raw) == sorted(
        prefix + k for k in ODD_KEYS)
    assert res["EncodingType"] == "url"
    # '+' is not a space: the two are different keys.
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=prefix + "plus sign.txt")
    assert error_code(e.value) == "NoSuchKey"
    for name in ODD_KEYS:
        client.delete_object(Bucket=backend, Key=prefix + name)
    assert list_keys(client, backend, prefix) == []


def test_delete_objects(client, backend, prefix):
    keys = [f"{prefix}batch/{i:03d}" for i in range(30)] + [prefix + "batch/odd key+=ü"]
    for k in keys:
        client.put_object(Bucket=backend, Key=k, Body=k.encode())
    doomed = keys[:20] + [keys[-1], prefix + "batch/never-existed"]
    res = client.delete_objects(Bucket=backend, Delete={
        "Objects": [{"Key": k} for k in doomed]})
    assert sorted(d["Key"] for d in res.get("Deleted", [])) == sorted(doomed)
    assert res.get("Errors", []) == []
    assert list_keys(client, backend, prefix) == sorted(keys[20:30])

    res = client.delete_objects(Bucket=backend, Delete={
        "Objects": [{"Key": k} for k in keys[20:30]], "Quiet": True})
    assert res.get("Deleted", []) == [] and res.get("Errors", []) == []
    assert list_keys(client, backend, prefix) == []


def test_get_missing_and_errors_are_s3_xml(client, backend, prefix):
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket=backend, Key=prefix + "nope")
    assert error_code(e.value) == "NoSuchKey"
    assert e.value.response["Error"].get("Message")
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id")
    with pytest.raises(ClientError) as e:
        client.get_object(Bucket="no-such-backend", Key="x")
    assert error_code(e.value) == "NoSuchBucket"
    assert http_status(e.value) == 404
