"""The aws cli (v1, `s3api` and `s3`) against the dedicated S3 listener, path style."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from support import aws_cli

MB = 1024 * 1024


@pytest.fixture
def aws(aws_env, creds):
    def run(*args, check=True):
        return aws_cli(aws_env, "--endpoint-url", creds.endpoint, *args, check=check)
    return run


def test_s3api_round_trip(aws, backend, prefix, tmp_path):
    src = tmp_path / "in.csv"
    body = b"id,name\n1,jam\n2,flour\n"
    src.write_bytes(body)
    key = prefix + "cli/pantry list.csv"

    buckets = json.loads(aws("s3api", "list-buckets").stdout)
    assert backend in [b["Name"] for b in buckets["Buckets"]]

    put = json.loads(aws("s3api", "put-object", "--bucket", backend, "--key", key,
                         "--body", str(src), "--content-type", "text/csv").stdout)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'

    head = json.loads(aws("s3api", "head-object", "--bucket", backend, "--key", key).stdout)
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "text/csv"

    out = tmp_path / "out.csv"
    got = json.loads(aws("s3api", "get-object", "--bucket", backend, "--key", key,
                         str(out)).stdout)
    assert out.read_bytes() == body
    assert got["ETag"] == put["ETag"]

    part = tmp_path / "part"
    got = json.loads(aws("s3api", "get-object", "--bucket", backend, "--key", key,
                         "--range", "bytes=3-6", str(part)).stdout)
    assert part.read_bytes() == body[3:7]
    assert got["ContentRange"] == f"bytes 3-6/{len(body)}"

    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", backend,
                            "--prefix", prefix + "cli/").stdout)
    assert [o["Key"] for o in listed["Contents"]] == [key]

    aws("s3api", "delete-object", "--bucket", backend, "--key", key)
    res = aws("s3api", "head-object", "--bucket", backend, "--key", key, check=False)
    assert res.returncode != 0
    assert b"404" in res.stderr


def test_s3api_conditional_put(aws, backend, prefix, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"x")
    key = prefix + "cli/once"
    aws("s3api", "put-object", "--bucket", backend, "--key", key, "--body", str(src),
        "--if-none-match", "*")
    res = aws("s3api", "put-object", "--bucket", backend, "--key", key, "--body", str(src),
              "--if-none-match", "*", check=False)
    assert res.returncode != 0
    assert b"PreconditionFailed" in res.stderr


def test_s3_cp_64mb_multipart(aws, backend, prefix, tmp_path):
    data = os.urandom(64 * MB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    url = f"s3://{backend}/{prefix}cli/big file.bin"
    aws("s3", "cp", str(src), url, "--only-show-errors")

    head = json.loads(aws("s3api", "head-object", "--bucket", backend,
                          "--key", f"{prefix}cli/big file.bin").stdout)
    assert head["ContentLength"] == len(data)
    # The cli uses 8 MB parts by default: a multipart ETag.
    assert head["ETag"].endswith('-8"'), head["ETag"]

    out = tmp_path / "back.bin"
    aws("s3", "cp", url, str(out), "--only-show-errors")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()

    ls = aws("s3", "ls", f"s3://{backend}/{prefix}cli/").stdout.decode()
    assert "big file.bin" in ls and str(len(data)) in ls

    aws("s3", "rm", "--recursive", f"s3://{backend}/{prefix}", "--only-show-errors")
    assert aws("s3", "ls", f"s3://{backend}/{prefix}", check=False).stdout.strip() == b""


def test_s3_sync_tree(aws, backend, prefix, tmp_path):
    tree = tmp_path / "tree"
    files = {
        "a.txt": b"a",
        "sub/b.csv": b"b,c\n",
        "sub/deeper/c d+e=f.json": b"{}",
        "ü/ñ.txt": "ñ".encode(),
    }
    for name, body in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(body)
        # Older than any upload: sync compares times, and S3 keeps whole seconds.
        old = time.time() - 3600
        os.utime(tree / name, (old, old))
    base = f"s3://{backend}/{prefix}sync"
    aws("s3", "sync", str(tree), base, "--only-show-errors")
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", backend,
                            "--prefix", prefix + "sync/").stdout)
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(
        f"{prefix}sync/{n}" for n in files)
    # A second sync has nothing to do.
    res = aws("s3", "sync", str(tree), base, "--dryrun")
    assert res.stdout.strip() == b""
    back = tmp_path / "back"
    aws("s3", "sync", base, str(back), "--only-show-errors")
    for name, body in files.items():
        assert (back / name).read_bytes() == body
