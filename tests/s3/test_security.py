"""Who can do what through the proxy: another user's credentials, forged and tampered access
keys, read-only, prefix- and backend-scoped credentials, regions, presigned URLs, clock skew,
traversal keys (checked on disk and upstream), and secrets at rest."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from support import (MOTO_BUCKET, MOTO_PREFIX, MOTO_SECRET, error_code, http_status, list_keys,
                     raw_get, s3_client, signed_request)

# ---------------------------------------------------------------------------------------------
# helpers


def expect_error(call, status: int, *codes: str):
    with pytest.raises(ClientError) as e:
        call()
    got = (http_status(e.value), error_code(e.value))
    assert got[0] == status, got
    if codes:
        assert got[1] in codes, got
    return e.value


def tamper(access_key_id: str, edit) -> str:
    """Decodes a proxy access key id (`LP1` + base32(payload || mac16)), lets `edit` change
    the payload, and re-encodes it with the old MAC."""
    assert access_key_id.startswith("LP1")
    body = access_key_id[3:]
    raw = bytearray(base64.b32decode(body + "=" * (-len(body) % 8)))
    payload, mac = raw[:-16], raw[-16:]
    payload = edit(bytearray(payload))
    return "LP1" + base64.b32encode(bytes(payload) + bytes(mac)).decode().rstrip("=")


def owner_state(client, backend, key):
    got = client.get_object(Bucket=backend, Key=key)
    return got["ETag"], got["Body"].read()


def storage_files(data_dir: Path) -> list[Path]:
    root = data_dir / "storage"
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()] if root.exists() else []


# ---------------------------------------------------------------------------------------------
# another user's credentials


@pytest.fixture
def owners_object(creds, backend, prefix):
    """An object and an open multipart upload of the owner's, in `backend`."""
    client = s3_client(creds)
    key = prefix + "private/ledger.csv"
    body = b"account,balance\nowner,1000000\n"
    client.put_object(Bucket=backend, Key=key, Body=body, ContentType="text/csv")
    pending = prefix + "private/pending.bin"
    upload_id = client.create_multipart_upload(Bucket=backend, Key=pending)["UploadId"]
    part = client.upload_part(Bucket=backend, Key=pending, UploadId=upload_id, PartNumber=1,
                              Body=b"owner part")["ETag"]
    return {"client": client, "key": key, "body": body, "pending": pending,
            "upload_id": upload_id, "part": part}


@pytest.mark.parametrize("which", ["listener", "browser"])
def test_bob_cannot_reach_owners_objects(bob_creds, backend, owners_object, owner, bob,
                                         larder, which):
    o = owners_object
    key, pending, upload_id = o["key"], o["pending"], o["upload_id"]
    before = owner_state(o["client"], backend, key)
    b = s3_client(bob_creds, which)
    # Bob's `local` is his own namespace; he has no backend called `moto` at all.
    missing = "NoSuchKey" if backend == "local" else "NoSuchBucket"
    gone_upload = "NoSuchUpload" if backend == "local" else "NoSuchBucket"

    names = [x["Name"] for x in b.list_buckets()["Buckets"]]
    assert "local" in names
    assert "moto" not in names

    # Read, head, range, list.
    expect_error(lambda: b.get_object(Bucket=backend, Key=key), 404, missing)
    expect_error(lambda: b.get_object(Bucket=backend, Key=key, Range="bytes=0-3"), 404, missing)
    expect_error(lambda: b.head_object(Bucket=backend, Key=key), 404)
    prefix = key.split("/")[0] + "/"
    if backend == "local":
        assert list_keys(b, backend, prefix) == []
        assert all(not k.startswith(prefix) for k in list_keys(b, backend, ""))
        listing = b.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/")
        assert "CommonPrefixes" not in listing and "Contents" not in listing
    else:
        expect_error(lambda: b.list_objects_v2(Bucket=backend, Prefix=prefix), 404,
                     "NoSuchBucket")
        expect_error(lambda: b.head_bucket(Bucket=backend), 404)

    # Copy the owner's object into Bob's namespace.
    expect_error(lambda: b.copy_object(Bucket=backend, Key="stolen.csv",
                                       CopySource={"Bucket": backend, "Key": key}),
                 404, missing)

    # Delete it, singly and in a batch (S3 answers success for missing keys: the point is
    # that the owner's object survives).
    if backend == "local":
        b.delete_object(Bucket=backend, Key=key)
        b.delete_objects(Bucket=backend, Delete={"Objects": [{"Key": key}]})
    else:
        expect_error(lambda: b.delete_object(Bucket=backend, Key=key), 404, "NoSuchBucket")
        expect_error(lambda: b.delete_objects(Bucket=backend, Delete={"Objects": [{"Key": key}]}),
                     404, "NoSuchBucket")

    # The owner's multipart upload: list, add a part, complete, abort.
    expect_error(lambda: b.list_parts(Bucket=backend, Key=pending, UploadId=upload_id), 404,
                 gone_upload)
    expect_error(lambda: b.upload_part(Bucket=backend, Key=pending, UploadId=upload_id,
                                       PartNumber=2, Body=b"bob part"), 404, gone_upload)
    expect_error(lambda: b.complete_multipart_upload(
        Bucket=backend, Key=pending, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": o["part"]}]}), 404, gone_upload)
    expect_error(lambda: b.abort_multipart_upload(Bucket=backend, Key=pending,
                                                  UploadId=upload_id), 404, gone_upload)

    # Writing the same key: lands in Bob's own namespace (local) or nowhere (moto).
    if backend == "local":
        b.put_object(Bucket=backend, Key=key, Body=b"bob was here")
        assert b.get_object(Bucket=backend, Key=key)["Body"].read() == b"bob was here"
        up = b.create_multipart_upload(Bucket=backend, Key=pending)["UploadId"]
        assert up != upload_id
        etag = b.upload_part(Bucket=backend, Key=pending, UploadId=up, PartNumber=1,
                             Body=b"bob part")["ETag"]
        b.complete_multipart_upload(Bucket=backend, Key=pending, UploadId=up,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        bob_files = [p for p in storage_files(larder.data_dir)
                     if p.name in ("ledger.csv", "pending.bin")]
        bob_root = larder.data_dir / "storage" / "users" / bob.id / "local"
        assert any(p.is_relative_to(bob_root) for p in bob_files)
        b.delete_object(Bucket=backend, Key=key)
        b.delete_object(Bucket=backend, Key=pending)
    else:
        expect_error(lambda: b.put_object(Bucket=backend, Key=key, Body=b"bob was here"), 404,
                     "NoSuchBucket")
        expect_error(lambda: b.create_multipart_upload(Bucket=backend, Key=pending), 404,
                     "NoSuchBucket")

    # The owner's object and upload are untouched: the upload still completes.
    assert owner_state(o["client"], backend, key) == before
    parts = o["client"].list_parts(Bucket=backend, Key=pending, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, o["part"])]
    o["client"].complete_multipart_upload(
        Bucket=backend, Key=pending, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": o["part"]}]})
    assert o["client"].get_object(Bucket=backend, Key=pending)["Body"].read() == b"owner part"


# ---------------------------------------------------------------------------------------------
# forged and tampered credentials


def test_tampered_and_unknown_access_keys(creds, bob_creds, owner, moto_backend):
    owner_id = uuid.UUID(owner.id).bytes

    def as_owner(p):
        p[0:16] = owner_id
        return p

    def later(p):
        p[16:20] = (int.from_bytes(p[16:20], "big") + 86400).to_bytes(4, "big")
        return p

    forged = {
        # Bob claims to be the owner, keeping his own MAC and secret.
        "user swapped": tamper(bob_creds.access_key_id, as_owner),
        "expiry extended": tamper(bob_creds.access_key_id, later),
        "one bit flipped": tamper(bob_creds.access_key_id, lambda p: p[:-1] + bytes([p[-1] ^ 1])),
        "truncated": bob_creds.access_key_id[:-4],
        "not ours": "AKIAIOSFODNN7EXAMPLE",
        "garbage": "LP1" + "A" * 40,
    }
    for why, akid in forged.items():
        c = s3_client(bob_creds.with_(access_key_id=akid))
        e = expect_error(lambda: c.list_objects_v2(Bucket="local"), 403, "InvalidAccessKeyId")
        assert e, why
        expect_error(lambda: c.put_object(Bucket="local", Key="forged", Body=b"x"), 403,
                     "InvalidAccessKeyId")
        expect_error(lambda: c.get_object(Bucket="moto", Key="anything"), 403,
                     "InvalidAccessKeyId")

    # A real key id with the wrong secret, or another user's secret.
    for secret in ("wrong-secret-" + "x" * 28, bob_creds.secret_access_key):
        c = s3_client(creds.with_(secret_access_key=secret))
        expect_error(lambda: c.list_objects_v2(Bucket="local"), 403, "SignatureDoesNotMatch")
        expect_error(lambda: c.put_object(Bucket="local", Key="forged", Body=b"x"), 403,
                     "SignatureDoesNotMatch")
        res = signed_request(creds, "GET", "/local", "list-type=2", secret=secret)
        assert (res.status, res.code()) == (403, "SignatureDoesNotMatch")

    # No signature at all.
    res = requests.get(f"{creds.endpoint}/local?list-type=2", timeout=10)
    assert res.status_code == 403 and "<Code>AccessDenied</Code>" in res.text
    res = requests.put(f"{creds.endpoint}/local/anonymous", data=b"x", timeout=10)
    assert res.status_code == 403
    res = requests.get(f"{creds.browser_endpoint}/local?list-type=2", timeout=10)
    assert res.status_code == 403

    # Nothing was written by any of it.
    s3 = s3_client(creds)
    expect_error(lambda: s3.head_object(Bucket="local", Key="forged"), 404)
    expect_error(lambda: s3.head_object(Bucket="local", Key="anonymous"), 404)


def test_credential_requests_are_validated(owner):
    for body, status in [
        ({"ttl_seconds": 59}, 422),
        ({"ttl_seconds": 10 * 365 * 86400}, 422),
        ({"access": "admin"}, 422),
        ({"backends": []}, 422),
        ({"backends": ["not-a-backend"]}, 404),
        ({"unknown_field": 1}, 422),
    ]:
        res = owner.request("POST", "/api/storage/proxy-credentials", json=body)
        assert res.status_code == status, (body, res.status_code, res.text)
    c = owner.mint(ttl_seconds=120, access="read", prefix="x/")
    expires = dt.datetime.fromisoformat(c.raw["expires_at"].replace("Z", "+00:00"))
    left = (expires - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 100 < left <= 121
    assert c.raw["access"] == "read" and c.raw["prefix"] == "x/"
    # Minting needs the session's CSRF token.
    res = owner.http.post(f"{owner.base}/api/storage/proxy-credentials", timeout=10)
    assert res.status_code == 403
    # ... and a session.
    res = requests.post(f"{owner.base}/api/storage/proxy-credentials", timeout=10)
    assert res.status_code == 401


# ---------------------------------------------------------------------------------------------
# scoped credentials


def test_read_only_credentials(owner, creds, backend, prefix):
    rw = s3_client(creds)
    key = prefix + "ro/data.csv"
    rw.put_object(Bucket=backend, Key=key, Body=b"original")
    pending = prefix + "ro/pending"
    upload_id = rw.create_multipart_upload(Bucket=backend, Key=pending)["UploadId"]
    part = rw.upload_part(Bucket=backend, Key=pending, UploadId=upload_id, PartNumber=1,
                          Body=b"p")["ETag"]
    ro_creds = owner.mint(access="read")
    ro = s3_client(ro_creds)
    ro_tampered = s3_client(ro_creds.with_(
        access_key_id=tamper(ro_creds.access_key_id, lambda p: p[:20] + bytes([p[20] | 1])
                             + p[21:])))

    # Reads work.
    assert ro.get_object(Bucket=backend, Key=key)["Body"].read() == b"original"
    ro.head_object(Bucket=backend, Key=key)
    assert key in list_keys(ro, backend, prefix)
    assert [p["PartNumber"] for p in ro.list_parts(Bucket=backend, Key=pending,
                                                   UploadId=upload_id)["Parts"]] == [1]

    denied = [
        lambda c: c.put_object(Bucket=backend, Key=key, Body=b"changed"),
        lambda c: c.put_object(Bucket=backend, Key=prefix + "ro/new", Body=b"new"),
        lambda c: c.delete_object(Bucket=backend, Key=key),
        lambda c: c.delete_objects(Bucket=backend, Delete={"Objects": [{"Key": key}]}),
        lambda c: c.copy_object(Bucket=backend, Key=prefix + "ro/copy",
                                CopySource={"Bucket": backend, "Key": key}),
        lambda c: c.create_multipart_upload(Bucket=backend, Key=prefix + "ro/mp"),
        lambda c: c.upload_part(Bucket=backend, Key=pending, UploadId=upload_id, PartNumber=2,
                                Body=b"q"),
        lambda c: c.complete_multipart_upload(
            Bucket=backend, Key=pending, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]}),
        lambda c: c.abort_multipart_upload(Bucket=backend, Key=pending, UploadId=upload_id),
    ]
    for call in denied:
        expect_error(lambda: call(ro), 403, "AccessDenied")
        # Setting the write bit in the key id breaks its MAC.
        expect_error(lambda: call(ro_tampered), 403, "InvalidAccessKeyId")

    assert rw.get_object(Bucket=backend, Key=key)["Body"].read() == b"original"
    for k in ("ro/new", "ro/copy", "ro/mp"):
        expect_error(lambda: rw.head_object(Bucket=backend, Key=prefix + k), 404)
    parts = rw.list_parts(Bucket=backend, Key=pending, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, part)]
    rw.abort_multipart_upload(Bucket=backend, Key=pending, UploadId=upload_id)


def test_prefix_scoped_credentials(owner, creds, backend, prefix):
    rw = s3_client(creds)
    inside, outside = prefix + "team/a.csv", prefix + "other/b.csv"
    rw.put_object(Bucket=backend, Key=inside, Body=b"team")
    rw.put_object(Bucket=backend, Key=outside, Body=b"other")
    scoped_creds = owner.mint(prefix=prefix + "team/")
    sc = s3_client(scoped_creds)

    assert sc.get_object(Bucket=backend, Key=inside)["Body"].read() == b"team"
    assert list_keys(sc, backend, prefix + "team/") == [inside]
    sc.put_object(Bucket=backend, Key=prefix + "team/new.csv", Body=b"new")

    expect_error(lambda: sc.get_object(Bucket=backend, Key=outside), 403, "AccessDenied")
    expect_error(lambda: sc.head_object(Bucket=backend, Key=outside), 403)
    expect_error(lambda: sc.get_object(Bucket=backend, Key=outside, Range="bytes=0-1"), 403,
                 "AccessDenied")
    # Listing above the prefix, beside it, or everything.
    for p in (prefix, prefix + "te", prefix + "other/", ""):
        expect_error(lambda: sc.list_objects_v2(Bucket=backend, Prefix=p), 403, "AccessDenied")
    expect_error(lambda: sc.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/"), 403,
                 "AccessDenied")
    expect_error(lambda: sc.put_object(Bucket=backend, Key=prefix + "other/c.csv", Body=b"c"),
                 403, "AccessDenied")
    expect_error(lambda: sc.delete_object(Bucket=backend, Key=outside), 403, "AccessDenied")
    expect_error(lambda: sc.copy_object(Bucket=backend, Key=prefix + "team/copied.csv",
                                        CopySource={"Bucket": backend, "Key": outside}),
                 403, "AccessDenied")
    expect_error(lambda: sc.copy_object(Bucket=backend, Key=prefix + "other/copied.csv",
                                        CopySource={"Bucket": backend, "Key": inside}),
                 403, "AccessDenied")
    expect_error(lambda: sc.create_multipart_upload(Bucket=backend, Key=prefix + "other/mp"),
                 403, "AccessDenied")
    # A path that only looks like it is inside.
    res = signed_request(scoped_creds, "GET",
                         "/" + backend + "/" + urllib.parse.quote(prefix + "team/../other/b.csv"))
    assert res.status in (400, 403), res
    # A batch: the inside key goes, the outside one is refused.
    out = sc.delete_objects(Bucket=backend, Delete={"Objects": [{"Key": inside},
                                                                {"Key": outside}]})
    assert [d["Key"] for d in out.get("Deleted", [])] == [inside]
    assert [(e["Key"], e["Code"]) for e in out.get("Errors", [])] == [(outside, "AccessDenied")]
    # A presigned URL made with scoped credentials reaches no further.
    url = sc.generate_presigned_url("get_object", Params={"Bucket": backend, "Key": outside})
    assert requests.get(url, timeout=10).status_code == 403

    assert rw.get_object(Bucket=backend, Key=outside)["Body"].read() == b"other"
    assert list_keys(rw, backend, prefix + "other/") == [outside]


def test_backend_scoped_credentials(owner, creds, moto_backend, prefix):
    rw = s3_client(creds)
    rw.put_object(Bucket="moto", Key=prefix + "m", Body=b"m")
    rw.put_object(Bucket="local", Key=prefix + "l", Body=b"l")

    only_local = s3_client(owner.mint(backends=["local"]))
    assert [b["Name"] for b in only_local.list_buckets()["Buckets"]] == ["local"]
    assert only_local.get_object(Bucket="local", Key=prefix + "l")["Body"].read() == b"l"
    expect_error(lambda: only_local.get_object(Bucket="moto", Key=prefix + "m"), 403,
                 "AccessDenied")
    expect_error(lambda: only_local.list_objects_v2(Bucket="moto"), 403, "AccessDenied")
    expect_error(lambda: only_local.head_bucket(Bucket="moto"), 403)
    expect_error(lambda: only_local.put_object(Bucket="moto", Key=prefix + "x", Body=b"x"), 403,
                 "AccessDenied")
    expect_error(lambda: only_local.delete_object(Bucket="moto", Key=prefix + "m"), 403,
                 "AccessDenied")
    # Copying out of a backend the credentials do not reach (the proxy copies within one
    # backend only, so it may refuse that first).
    with pytest.raises(ClientError) as e:
        only_local.copy_object(Bucket="local", Key=prefix + "stolen",
                               CopySource={"Bucket": "moto", "Key": prefix + "m"})
    assert (http_status(e.value), error_code(e.value)) in (
        (403, "AccessDenied"), (501, "NotImplemented")), e.value.response
    expect_error(lambda: rw.head_object(Bucket="local", Key=prefix + "stolen"), 404)

    only_moto = s3_client(owner.mint(backends=["moto"]))
    assert [b["Name"] for b in only_moto.list_buckets()["Buckets"]] == ["moto"]
    assert only_moto.get_object(Bucket="moto", Key=prefix + "m")["Body"].read() == b"m"
    expect_error(lambda: only_moto.get_object(Bucket="local", Key=prefix + "l"), 403,
                 "AccessDenied")
    expect_error(lambda: only_moto.put_object(Bucket="local", Key=prefix + "x", Body=b"x"), 403,
                 "AccessDenied")

    assert rw.get_object(Bucket="moto", Key=prefix + "m")["Body"].read() == b"m"
    expect_error(lambda: rw.head_object(Bucket="moto", Key=prefix + "x"), 404)
    expect_error(lambda: rw.head_object(Bucket="local", Key=prefix + "x"), 404)


# ---------------------------------------------------------------------------------------------
# signing details


def test_wrong_region(creds):
    c = s3_client(creds, region="eu-west-1")
    expect_error(lambda: c.list_objects_v2(Bucket="local"), 400, "AuthorizationHeaderMalformed")
    expect_error(lambda: c.put_object(Bucket="local", Key="wrong-region", Body=b"x"), 400,
                 "AuthorizationHeaderMalformed")
    res = signed_request(creds, "GET", "/local", "list-type=2", region="ap-south-1")
    assert (res.status, res.code()) == (400, "AuthorizationHeaderMalformed")
    expect_error(lambda: s3_client(creds).head_object(Bucket="local", Key="wrong-region"), 404)


def test_clock_skew(creds):
    skewed = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)
    res = signed_request(creds, "GET", "/local", "list-type=2", when=skewed)
    assert res.status == 403 and res.code() == "RequestTimeTooSkewed", res
    res = signed_request(creds, "GET", "/local", "list-type=2",
                         when=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20))
    assert res.status == 403 and res.code() == "RequestTimeTooSkewed", res
    # The signer itself is right: the same request now succeeds.
    res = signed_request(creds, "GET", "/local", "list-type=2")
    assert res.status == 200, res


@pytest.mark.parametrize("which", ["listener", "browser"])
def test_presigned_urls(creds, backend, prefix, which):
    c = s3_client(creds, which)
    key = prefix + "shared/report 2026+final.csv"
    body = b"q,revenue\n1,100\n"
    c.put_object(Bucket=backend, Key=key, Body=body)

    url = c.generate_presigned_url("get_object", Params={"Bucket": backend, "Key": key},
                                   ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    res = raw_get(url)
    assert res.status == 200 and res.body == body
    res = raw_get(url, headers={"Range": "bytes=2-8"})
    assert res.status == 206 and res.body == body[2:9]

    parts = urllib.parse.urlsplit(url)
    query = parts.query
    sig = urllib.parse.parse_qs(query)["X-Amz-Signature"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    tampered = {
        "signature": url.replace(sig, flipped),
        "key": urllib.parse.urlunsplit(parts._replace(
            path=parts.path.replace("shared", "shaded"))),
        "expiry": url.replace("X-Amz-Expires=300", "X-Amz-Expires=604800"),
        "credential": url.replace(urllib.parse.quote(creds.access_key_id),
                                  urllib.parse.quote(creds.access_key_id[:-2] + "AA")),
    }
    for why, bad in tampered.items():
        assert bad != url, why
        res = raw_get(bad)
        assert res.status == 403, (why, res)
        assert res.code() in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"), (
            why, res)

    # Presigned PUT.
    put_url = c.generate_presigned_url("put_object",
                                       Params={"Bucket": backend, "Key": prefix + "shared/up"},
                                       ExpiresIn=300)
    res = requests.put(put_url, data=b"uploaded", timeout=10)
    assert res.status_code == 200, res.text
    assert c.get_object(Bucket=backend, Key=prefix + "shared/up")["Body"].read() == b"uploaded"
    # A presigned GET cannot be replayed as a PUT.
    res = requests.put(url, data=b"overwrite", timeout=10)
    assert res.status_code == 403
    assert c.get_object(Bucket=backend, Key=key)["Body"].read() == body

    # Expired.
    short = c.generate_presigned_url("get_object", Params={"Bucket": backend, "Key": key},
                                     ExpiresIn=1)
    time.sleep(2.1)
    res = raw_get(short)
    assert res.status == 403, res
    assert res.code() == "AccessDenied", res


# ---------------------------------------------------------------------------------------------
# traversal


TRAVERSAL_KEYS = [
    "../escape",
    "a/../../escape",
    "%2e%2e/escape",
    "%2E%2E%2Fescape",
    "..%2f..%2fescape",
    "/escape",
    "%2Fescape",
    "a//escape",
    "./escape",
    "a/./escape",
    "a/escape/..",
    "a/escape/",
    ".larder/meta/escape",
    ".larder",
]


@pytest.mark.parametrize("which", ["listener", "browser"])
def test_traversal_keys_are_refused(creds, backend, larder, owner, bob, moto_backend, moto_s3,
                                    which):
    """Keys that would climb out of the user's namespace (or into Larder's own `.larder/`) are
    refused on every write and read path, and nothing lands outside the namespace on disk or
    outside the backend's prefix upstream."""
    before = set(storage_files(larder.data_dir))

    def refused(res, what):
        assert res.status == 400, (what, res.status, res.body[:300])
        assert res.code() == "InvalidArgument", (what, res.body[:300])

    for raw_key in TRAVERSAL_KEYS:
        path = f"/{backend}/{raw_key}"
        refused(signed_request(creds, "PUT", path, body=b"escaped", which=which), ("PUT", path))
        refused(signed_request(creds, "GET", path, which=which), ("GET", path))
        refused(signed_request(creds, "HEAD", path, which=which), ("HEAD", path))
        refused(signed_request(creds, "DELETE", path, which=which), ("DELETE", path))
        refused(signed_request(creds, "POST", path, "uploads", which=which), ("POST", path))
        refused(signed_request(creds, "PUT", f"/{backend}/ok-target", body=b"",
                               headers={"x-amz-copy-source": f"{backend}/{raw_key}"},
                               which=which), ("COPY", raw_key))

    # A bucket segment that climbs: no such backend.
    for path in ("/../escape", "/..%2F..%2Fescape/x", "/%2e%2e/escape", "/./local/escape"):
        res = signed_request(creds, "PUT", path, body=b"escaped", which=which)
        assert res.status in (400, 404), (path, res)

    # boto3 builds these itself; whatever it sends must be refused too.
    c = s3_client(creds, which)
    for key in ("../escape", "a/../../escape", "/escape", "a//escape", ".larder/escape"):
        with pytest.raises(ClientError) as e:
            c.put_object(Bucket=backend, Key=key, Body=b"escaped")
        assert http_status(e.value) in (400, 404), (key, e.value.response)

    # DeleteObjects reports each bad key.
    out = c.delete_objects(Bucket=backend, Delete={"Objects": [
        {"Key": "../escape"}, {"Key": "/escape"}, {"Key": "a//escape"}]})
    assert sorted(e["Key"] for e in out.get("Errors", [])) == sorted(
        ["../escape", "/escape", "a//escape"])
    assert {e["Code"] for e in out["Errors"]} == {"InvalidArgument"}

    # On disk: nothing new, and nothing at all outside the users' `local` namespaces.
    after = set(storage_files(larder.data_dir))
    assert after - before == set()
    roots = [larder.data_dir / "storage" / "users" / u.id / "local" for u in (owner, bob)]
    stray = [p for p in after if not any(p.is_relative_to(r) for r in roots)]
    assert stray == []
    for p in larder.root.rglob("*escape*"):
        pytest.fail(f"found {p}")
    # Upstream: every key is under the backend's prefix.
    listed = moto_s3.list_objects_v2(Bucket=MOTO_BUCKET).get("Contents", [])
    assert all(o["Key"].startswith(MOTO_PREFIX + "/") for o in listed)
    assert not any("escape" in o["Key"] for o in listed)


# ---------------------------------------------------------------------------------------------
# secrets at rest


def test_vault_holds_no_plaintext_secret(larder, owner, moto_backend):
    # The API never returns it.
    detail = owner.get("/api/storage/backends/moto")
    assert detail["has_secret"] is True
    assert MOTO_SECRET not in str(detail)
    assert MOTO_SECRET not in str(owner.get("/api/storage/backends"))

    needles = [MOTO_SECRET.encode(), MOTO_SECRET.encode("utf-16-le"),
               base64.b64encode(MOTO_SECRET.encode()), MOTO_SECRET.encode().hex().encode()]
    checked = 0
    for path in larder.root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        checked += 1
        for needle in needles:
            assert needle not in data, f"{path} holds the backend's secret ({needle[:12]!r}…)"
    assert checked > 3
    assert (larder.data_dir / "state").exists()
    # Key files are private to the server's user.
    for key_file in (larder.data_dir / "keys").glob("*"):
        assert os.stat(key_file).st_mode & 0o077 == 0, key_file
