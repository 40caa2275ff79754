"""Fixtures for the S3 proxy suite: a real `larder serve`, a real `moto_server` as an upstream
S3, two signed-in users (the owner and `bob`), proxy credentials, and the `backend` fixture that
runs each test against both the built-in `local` backend and an `s3` backend (`moto`).

Environment:
- LARDER_BIN: the binary (default: $CARGO_TARGET_DIR/debug/larder, else <repo>/target/debug/larder).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from support import (MOTO_ACCESS_KEY, MOTO_BUCKET, MOTO_PREFIX, MOTO_SECRET, Larder, LarderUser,
                     free_port, s3_client, stop, tail, wait_until)

REPO = Path(__file__).resolve().parents[2]

# Process logs shown with every failing test.
_LOGS: dict[str, Path] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, path in _LOGS.items():
            report.sections.append((f"{name} log (tail)",
                                    tail(path, 6000 if name == "larder" else 2500)))


@pytest.fixture(scope="session")
def larder(tmp_path_factory):
    root = tmp_path_factory.mktemp("larder")
    _LOGS["larder"] = root / "larder.log"
    node = Larder(root)
    yield node
    stop(node.proc)


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A real S3 server (moto_server) on a free loopback port: the upstream of the `s3`
    backend."""
    root = tmp_path_factory.mktemp("moto")
    log = root / "moto.log"
    _LOGS["moto_server"] = log
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    wait_until("moto_server", lambda: requests.get(f"{url}/moto-api/", timeout=5).status_code
               < 500, proc=proc, log=log)
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def moto_s3(moto):
    """boto3 straight at moto (to look behind the proxy)."""
    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                        aws_access_key_id=MOTO_ACCESS_KEY, aws_secret_access_key=MOTO_SECRET,
                        config=Config(s3={"addressing_style": "path"}))


@pytest.fixture(scope="session")
def owner(larder):
    return LarderUser(larder.base, larder.login_url)


@pytest.fixture(scope="session")
def bob(larder):
    return LarderUser(larder.base, larder.login_link("bob"))


@pytest.fixture(scope="session")
def moto_backend(owner, moto, moto_s3):
    """The owner's `s3` backend named `moto`, added through the API, on a bucket of
    moto_server (path style, under a key prefix)."""
    moto_s3.create_bucket(Bucket=MOTO_BUCKET)
    res = owner.request("POST", "/api/storage/backends", json={
        "name": "moto",
        "endpoint": moto,
        "region": "us-east-1",
        "bucket": MOTO_BUCKET,
        "prefix": MOTO_PREFIX,
        "path_style": True,
        "access_key_id": MOTO_ACCESS_KEY,
        "secret_access_key": MOTO_SECRET,
    })
    assert res.status_code == 201, (res.status_code, res.text)
    test = owner.request("POST", "/api/storage/backends/moto/test")
    assert test.status_code == 200 and test.json()["ok"], test.text
    return "moto"


@pytest.fixture(scope="session", params=["local", "s3"])
def backend(request):
    """The bucket (backend name) under test: the built-in `local`, or the `moto` s3 backend."""
    if request.param == "local":
        return "local"
    return request.getfixturevalue("moto_backend")


@pytest.fixture(scope="session")
def creds(owner):
    """The owner's read-write credentials for every backend."""
    return owner.mint()


@pytest.fixture(scope="session")
def bob_creds(bob):
    return bob.mint()


@pytest.fixture(scope="session", params=["listener", "browser"])
def endpoint(request):
    """Which of the proxy's two mounts: the dedicated listener root or `/s3` on the origin."""
    return request.param


@pytest.fixture(scope="session")
def s3(creds):
    """The owner's boto3 client on the dedicated listener."""
    return s3_client(creds, "listener")


@pytest.fixture
def client(creds, endpoint):
    return s3_client(creds, endpoint)


@pytest.fixture
def prefix():
    """A fresh key prefix per test (the local backend cannot hold `a` and `a/b` at once)."""
    return f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory, creds):
    """Environment for the aws cli: the owner's proxy credentials, path-style addressing."""
    root = tmp_path_factory.mktemp("awscli")
    config = root / "config"
    config.write_text("[default]\n"
                      f"region = {creds.region}\n"
                      "s3 =\n"
                      "    addressing_style = path\n")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-credentials"),
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_DEFAULT_REGION": creds.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "1",
    }
