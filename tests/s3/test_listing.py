"""ListObjectsV2: prefixes, delimiters, paging (over 2,500 keys), start-after, continuation
tokens, encoding, in the exact order S3 gives (UTF-8 byte order)."""

from __future__ import annotations

import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from support import error_code, s3_client, s3_order

GROUPS = 50
PER_GROUP = 50


@pytest.fixture(scope="session")
def _many_by_backend():
    return {}


@pytest.fixture
def many(creds, backend, _many_by_backend):
    """2,500 small objects under one prefix: `<p>gGG/oOO` (50 folders of 50), made once per
    backend."""
    if backend not in _many_by_backend:
        _many_by_backend[backend] = _make_many(creds, backend)
    return _many_by_backend[backend]


def _make_many(creds, backend):
    client = s3_client(creds, "listener", max_pool_connections=32)
    prefix = f"many-{uuid.uuid4().hex[:8]}/"
    keys = [f"{prefix}g{g:02d}/o{i:02d}" for g in range(GROUPS) for i in range(PER_GROUP)]

    def put(key):
        client.put_object(Bucket=backend, Key=key, Body=key.encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    return prefix, s3_order(keys)


def test_paging_over_2500_keys(client, backend, many):
    prefix, expected = many
    pages = []
    token = None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        res = client.list_objects_v2(Bucket=backend, Prefix=prefix, **kw)
        pages.append(res)
        if not res["IsTruncated"]:
            break
        token = res["NextContinuationToken"]
        assert len(pages) < 10, "listing does not end"
    assert [len(p.get("Contents", [])) for p in pages] == [1000, 1000, 500]
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]
    assert all(p["MaxKeys"] == 1000 for p in pages)
    got = [o["Key"] for p in pages for o in p["Contents"]]
    assert got == expected
    sizes = {o["Key"]: o["Size"] for p in pages for o in p["Contents"]}
    assert all(sizes[k] == len(k.encode()) for k in expected)
    assert all(o["ETag"].startswith('"') for p in pages for o in p["Contents"])
    assert pages[1]["ContinuationToken"] == pages[0]["NextContinuationToken"]


def test_paging_with_max_keys(client, backend, many):
    prefix, expected = many
    paginator = client.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=backend, Prefix=prefix,
                                    PaginationConfig={"PageSize": 333}))
    assert [len(p["Contents"]) for p in pages] == [333] * 7 + [2500 - 7 * 333]
    assert [o["Key"] for p in pages for o in p["Contents"]] == expected


def test_delimiter_over_many(client, backend, many):
    prefix, expected = many
    folders = [f"{prefix}g{g:02d}/" for g in range(GROUPS)]
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == folders
    assert "Contents" not in res
    assert res["KeyCount"] == GROUPS
    assert not res["IsTruncated"]

    # Common prefixes page like keys.
    seen = []
    token = None
    for _ in range(20):
        kw = {"ContinuationToken": token} if token else {}
        res = client.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/",
                                     MaxKeys=7, **kw)
        got = [p["Prefix"] for p in res.get("CommonPrefixes", [])]
        assert len(got) <= 7
        seen.extend(got)
        if not res["IsTruncated"]:
            break
        token = res["NextContinuationToken"]
    assert seen == folders

    res = client.list_objects_v2(Bucket=backend, Prefix=f"{prefix}g07/", Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == [k for k in expected
                                                   if k.startswith(f"{prefix}g07/")]
    assert "CommonPrefixes" not in res


def test_start_after(client, backend, many):
    prefix, expected = many
    res = client.list_objects_v2(Bucket=backend, Prefix=f"{prefix}g07/",
                                 StartAfter=f"{prefix}g07/o24")
    assert [o["Key"] for o in res["Contents"]] == [
        f"{prefix}g07/o{i:02d}" for i in range(25, PER_GROUP)]
    assert res["StartAfter"] == f"{prefix}g07/o24"

    # start-after between keys, across the whole set, then continued.
    start = f"{prefix}g23/o17x"
    rest = [k for k in expected if k > start]
    got = []
    for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=backend, Prefix=prefix, StartAfter=start):
        got.extend(o["Key"] for o in page.get("Contents", []))
    assert got == rest

    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, StartAfter=expected[-1])
    assert res["KeyCount"] == 0 and not res["IsTruncated"]


def test_max_keys_zero_and_bad_values(client, backend, many):
    prefix, _ = many
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, MaxKeys=0)
    assert res["KeyCount"] == 0
    assert "Contents" not in res
    with pytest.raises(ClientError) as e:
        client.list_objects_v2(Bucket=backend, Prefix=prefix, ContinuationToken="!!not-a-token")
    assert error_code(e.value) == "InvalidArgument"


def test_delimiter_order_interleaves_prefixes_and_keys(client, backend, prefix):
    """CommonPrefixes and Contents are one sequence in byte order: paging one entry at a
    time must walk it exactly ('-' < '.' < '/' < '0' < 'A' < 'a' < 'é')."""
    names = ["a-b", "a.b", "a/b", "a/c/d", "a0", "aa", "A", "é", "z/1", "z/2", "zz"]
    for n in names:
        client.put_object(Bucket=backend, Key=prefix + n, Body=n.encode())
    entries = []
    token = None
    for _ in range(30):
        kw = {"ContinuationToken": token} if token else {}
        res = client.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/",
                                     MaxKeys=1, **kw)
        page = [o["Key"] for o in res.get("Contents", [])] + [
            p["Prefix"] for p in res.get("CommonPrefixes", [])]
        assert len(page) <= 1, page
        entries.extend(page)
        if not res["IsTruncated"]:
            break
        token = res["NextContinuationToken"]
    expected = [prefix + e for e in ["A", "a-b", "a.b", "a/", "a0", "aa", "z/", "zz", "é"]]
    assert entries == expected

    # All at once: the same split into keys and prefixes.
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == [
        prefix + e for e in ["A", "a-b", "a.b", "a0", "aa", "zz", "é"]]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == [prefix + "a/", prefix + "z/"]

    # A prefix that is not a folder boundary.
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix + "a", Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == [
        prefix + e for e in ["a-b", "a.b", "a0", "aa"]]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == [prefix + "a/"]

    # Nested folder, another delimiter.
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix + "a/", Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == [prefix + "a/b"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == [prefix + "a/c/"]
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="-")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == [prefix + "a-"]

    # Empty prefix listing below nothing.
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix + "nothing-here/")
    assert res["KeyCount"] == 0 and "Contents" not in res


def test_encoding_type_url_on_prefixes(client, backend, prefix):
    client.put_object(Bucket=backend, Key=prefix + "sp ace/ü+=/leaf", Body=b"x")
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix, Delimiter="/",
                                 EncodingType="url")
    assert res["EncodingType"] == "url"
    raw = [p["Prefix"] for p in res["CommonPrefixes"]]
    assert len(raw) == 1 and " " not in raw[0] and raw[0].isascii()
    assert urllib.parse.unquote_plus(raw[0]) == prefix + "sp ace/"
    # With boto3 choosing the encoding itself it decodes for us.
    res = client.list_objects_v2(Bucket=backend, Prefix=prefix + "sp ace/", Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == [prefix + "sp ace/ü+=/"]
