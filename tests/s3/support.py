"""Helpers shared by the S3 proxy suite: processes, sign-in, clients, a small SigV4 signer.

The signer exists so tests can send requests boto3 would refuse to build (traversal paths,
a region that does not match, a skewed clock, exact bytes on the wire) while still being
signed correctly, so the proxy's key checks, not its signature check, are what answers.
"""

from __future__ import annotations

import datetime as dt
import os
import hashlib
import hmac
import html
import http.client
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import boto3
import requests
from botocore.config import Config

# The upstream of the `s3` backend (moto_server). The secret is distinctive so the vault test
# can grep the data dir for it.
MOTO_ACCESS_KEY = "AKIAMOTOTESTKEY00001"
MOTO_SECRET = "moto-secret-" + uuid.uuid4().hex
MOTO_BUCKET = "larder-upstream"
MOTO_PREFIX = "warehouse"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = 60.0, proc: subprocess.Popen | None = None,
               log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except Exception:  # noqa: BLE001 - polling a server that is starting
            got = None
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-5000:] if log else ""
            raise RuntimeError(f"process exited ({proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-5000:] if log else ""
            raise TimeoutError(f"timed out waiting for {what}:\n{tail}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, chars: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-chars:]


# ---------------------------------------------------------------------------------------------
# Larder: sign-in and the API


class LarderUser:
    """One signed-in browser session, used as a person would (cookie + CSRF token)."""

    def __init__(self, base: str, login_url: str):
        self.base = base
        self.http = requests.Session()
        page = self.http.get(login_url, timeout=30)
        page.raise_for_status()
        token = _hidden(page.text, "token")
        nonce = _hidden(page.text, "nonce")
        res = self.http.post(f"{base}/login", data={"token": token, "nonce": nonce},
                             timeout=30, allow_redirects=True)
        res.raise_for_status()
        assert res.url.endswith("/query"), f"login ended at {res.url}"
        m = re.search(r'<meta name="csrf-token" content="([^"]+)"', res.text)
        assert m, "the /query page has no csrf-token meta"
        self.csrf = html.unescape(m.group(1))
        me = self.get("/api/me")
        self.id: str = me["id"]
        self.name: str = me["name"]

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if method.upper() not in ("GET", "HEAD", "OPTIONS"):
            headers["X-CSRF-Token"] = self.csrf
        return self.http.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kw)

    def get(self, path: str):
        res = self.request("GET", path)
        assert res.status_code == 200, (res.status_code, res.text)
        return res.json()

    def mint(self, **scope) -> "Creds":
        """Proxy credentials; no arguments = empty body (read-write, every backend)."""
        if scope:
            res = self.request("POST", "/api/storage/proxy-credentials", json=scope)
        else:
            res = self.request("POST", "/api/storage/proxy-credentials")
        assert res.status_code == 201, (res.status_code, res.text)
        body = res.json()
        return Creds(
            access_key_id=body["access_key_id"],
            secret_access_key=body["secret_access_key"],
            endpoint=body["endpoint"].rstrip("/"),
            browser_endpoint=body["browser_endpoint"].rstrip("/"),
            region=body["region"],
            raw=body,
        )


def _hidden(page: str, name: str) -> str:
    m = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page) or re.search(
        rf'<input[^>]*value="([^"]*)"[^>]*name="{name}"', page)
    assert m, f"no hidden input {name!r} on the login page:\n{page[:2000]}"
    return html.unescape(m.group(1))


@dataclass
class Creds:
    access_key_id: str
    secret_access_key: str
    endpoint: str
    browser_endpoint: str
    region: str
    raw: dict

    def with_(self, **kw) -> "Creds":
        d = dict(self.__dict__)
        d.update(kw)
        return Creds(**d)

    def url(self, which: str) -> str:
        return self.endpoint if which == "listener" else self.browser_endpoint


def s3_client(creds: Creds, which: str = "listener", region: str | None = None,
              attempts: int = 3, **config):
    """A boto3 S3 client on Larder's proxy: `which` is `listener` or `browser`. Retries as
    boto3's `standard` mode does by default (3 attempts); `attempts=1` shows every failure."""
    cfg = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        **config,
    )
    return boto3.client(
        "s3",
        endpoint_url=creds.url(which),
        region_name=region or creds.region,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        config=cfg,
    )


def error_code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def http_status(exc) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


# ---------------------------------------------------------------------------------------------
# A small SigV4 signer for raw requests (header auth), written for these tests.


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(s: str, keep_slash: bool) -> str:
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        k = urllib.parse.unquote(k)
        v = urllib.parse.unquote(v)
        pairs.append((_uri_encode(k, False), _uri_encode(v, False)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


@dataclass
class RawResponse:
    status: int
    headers: dict
    body: bytes

    def code(self) -> str:
        try:
            root = ET.fromstring(self.body)
        except ET.ParseError:
            return self.headers.get("x-amz-error-code", "")
        node = root.find("Code")
        return node.text if node is not None else ""


def sign(creds: Creds, method: str, raw_path: str, query: str = "", body: bytes = b"",
         headers: dict | None = None, which: str = "listener", region: str | None = None,
         when: dt.datetime | None = None, secret: str | None = None) -> tuple[str, dict]:
    """SigV4 header auth for `method raw_path?query` exactly as it will be sent (no
    normalisation, no re-encoding). `raw_path` is below the endpoint (it starts with
    `/bucket`). Returns the request target and the headers to send."""
    base = urllib.parse.urlsplit(creds.url(which))
    path = base.path.rstrip("/") + raw_path
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = when.strftime("%Y%m%d")
    region = region or creds.region
    payload_hash = hashlib.sha256(body).hexdigest()
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    hdrs["host"] = base.netloc
    hdrs["x-amz-date"] = amz_date
    hdrs["x-amz-content-sha256"] = payload_hash
    if body or method in ("PUT", "POST"):
        hdrs["content-length"] = str(len(body))
    signed = sorted(h for h in hdrs if h not in ("expect", "connection"))
    # SigV4 for S3: each path segment URI-encoded once (decoded first, as the receiver sees it).
    canonical_path = "/".join(_uri_encode(urllib.parse.unquote(seg), False)
                              for seg in path.split("/"))
    canonical = "\n".join([
        method,
        canonical_path,
        canonical_query(query),
        "".join(f"{k}:{' '.join(str(hdrs[k]).split())}\n" for k in signed),
        ";".join(signed),
        payload_hash,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + (secret or creds.secret_access_key)).encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, "
                             f"SignedHeaders={';'.join(signed)}, Signature={signature}")
    target = path + (f"?{query}" if query else "")
    return target, hdrs


def signed_request(creds: Creds, method: str, raw_path: str, query: str = "", body: bytes = b"",
                   headers: dict | None = None, which: str = "listener",
                   region: str | None = None, when: dt.datetime | None = None,
                   secret: str | None = None) -> RawResponse:
    """Sends one request signed by `sign`, on its own connection."""
    target, hdrs = sign(creds, method, raw_path, query, body, headers, which, region, when,
                        secret)
    base = urllib.parse.urlsplit(creds.url(which))
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        res = conn.getresponse()
        data = res.read()
        return RawResponse(res.status, {k.lower(): v for k, v in res.getheaders()}, data)
    finally:
        conn.close()


def raw_get(url: str, headers: dict | None = None) -> RawResponse:
    """A GET of an exact URL (presigned), no re-encoding."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        res = conn.getresponse()
        data = res.read()
        return RawResponse(res.status, {k.lower(): v for k, v in res.getheaders()}, data)
    finally:
        conn.close()


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def s3_order(keys) -> list[str]:
    """S3 lists keys in UTF-8 byte order."""
    return sorted(keys, key=lambda k: k.encode())


def aws_cli(env: dict, *args: str, check: bool = True, input_: bytes | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    aws = str(Path(sys.executable).parent / "aws")
    res = subprocess.run([aws, *args], env=env, capture_output=True, input=input_,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(
            f"aws {' '.join(args)} exited {res.returncode}:\n"
            f"stdout: {res.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr: {res.stderr.decode(errors='replace')[-3000:]}")
    return res


REPO = Path(__file__).resolve().parents[2]


def larder_bin() -> Path:
    if os.environ.get("LARDER_BIN"):
        return Path(os.environ["LARDER_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "larder"


class Larder:
    """A running `larder serve` on its own data dir."""

    def __init__(self, root: Path):
        self.root = root
        self.data_dir = root / "data"
        self.log = root / "larder.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "LARDER_DATA_DIR": str(self.data_dir),
            "LARDER_HTTP__ADDR": "127.0.0.1:0",
            "LARDER_S3__ADDR": "127.0.0.1:0",
            "RUST_LOG": "info,larder=debug",
        }
        binary = larder_bin()
        if not binary.exists():
            raise RuntimeError(f"{binary} does not exist: build it first (cargo build)")
        self.bin = binary
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(binary), "serve"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=root)
        login_file = self.data_dir / "login-url"
        url = wait_until("the login-url file",
                         lambda: login_file.exists() and login_file.read_text().strip(),
                         proc=self.proc, log=self.log)
        self.login_url = url
        self.base = url.split("/login/")[0]
        wait_until("/healthz", lambda: requests.get(f"{self.base}/healthz", timeout=5)
                   .status_code == 200, proc=self.proc, log=self.log)

    def login_link(self, user: str) -> str:
        res = subprocess.run([str(self.bin), "login-link", "--user", user], env=self.env,
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        links = [w for w in res.stdout.split() if "/login/" in w]
        assert links, f"no login link in {res.stdout!r}"
        return links[-1]
