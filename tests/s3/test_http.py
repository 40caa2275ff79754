"""HTTP-level behaviour real clients depend on: connections stay usable after a refused upload
(boto3 sends `Expect: 100-continue` and then no body), and CORS only for Larder's own origin."""

from __future__ import annotations

import socket
import urllib.parse

import pytest
import requests
from botocore.exceptions import BotoCoreError, ClientError

from support import error_code, http_status, s3_client, sign


def read_response(stream):
    """Reads one HTTP/1.1 response (status, lower-cased headers, body) from a socket file."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = stream.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = stream.read(length) if length else b""
    return status, headers, body


@pytest.mark.parametrize("which", ["listener", "browser"])
@pytest.mark.parametrize("refusal", ["read-only", "bad key", "wrong secret", "exists"])
def test_refused_upload_leaves_connection_unambiguous(owner, creds, which, refusal, prefix):
    """Send what boto3 sends for a PUT (`Expect: 100-continue`, a Content-Length, no body until
    `100 Continue`). If the proxy answers with a final error instead, the client will not send
    the body, so the server must not keep the connection open waiting for those bytes: it must
    either ask for the body (100 Continue) or say `Connection: close`. Otherwise the first
    bytes of the client's next request are read as the missing body and that request fails."""
    s3_client(creds).put_object(Bucket="local", Key=prefix + "there", Body=b"there")
    body = b"0123456789" * 100
    extra = {"expect": "100-continue"}
    if refusal == "read-only":
        who, path, secret = owner.mint(access="read"), f"/local/{prefix}up", None
    elif refusal == "bad key":
        who, path, secret = creds, "/local/a//b", None
    elif refusal == "wrong secret":
        who, path, secret = creds, f"/local/{prefix}up", "not-the-secret"
    else:  # a conditional write that cannot succeed (If-None-Match: * on an existing key)
        who, path, secret = creds, f"/local/{prefix}there", None
        extra["if-none-match"] = "*"
    target, headers = sign(who, "PUT", path, body=body, headers=extra, which=which,
                           secret=secret)
    base = urllib.parse.urlsplit(creds.url(which))
    with socket.create_connection((base.hostname, base.port), timeout=20) as sock:
        stream = sock.makefile("rb")
        head = f"PUT {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        status, res_headers, res_body = read_response(stream)
        if status == 100:
            sock.sendall(body)
            status, res_headers, res_body = read_response(stream)
            closes = res_headers.get("connection", "").lower() == "close"
        else:
            closes = res_headers.get("connection", "").lower() == "close"
            assert closes, (
                f"{status} to an `Expect: 100-continue` upload whose body was never asked for, "
                f"without `Connection: close`: the connection is left ambiguous "
                f"(headers {res_headers})")
        assert status in (400, 403, 412), (status, res_body[:300])
        if not closes:
            # In sync: the next request on the same connection is answered properly.
            target2, headers2 = sign(creds, "GET", f"/local/{prefix}there", which=which)
            sock.sendall((f"GET {target2} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers2.items()) + "\r\n").encode())
            status2, _, body2 = read_response(stream)
            assert (status2, body2) == (200, b"there")


@pytest.mark.parametrize("which", ["listener", "browser"])
def test_boto3_keeps_working_after_refused_uploads(owner, creds, which, prefix):
    """The same, as a person sees it: one boto3 client whose uploads are refused (read-only
    credentials) and whose reads must all still succeed."""
    s3_client(creds).put_object(Bucket="local", Key=prefix + "data", Body=b"data")
    ro = s3_client(owner.mint(access="read"), which, attempts=1)
    broken = []
    for i in range(150):
        try:
            ro.put_object(Bucket="local", Key=prefix + "data", Body=b"changed")
            broken.append((i, "put succeeded"))
        except ClientError as e:
            if error_code(e) != "AccessDenied":
                broken.append((i, "put", http_status(e), error_code(e)))
        except BotoCoreError as e:
            broken.append((i, "put", type(e).__name__))
        try:
            got = ro.get_object(Bucket="local", Key=prefix + "data")["Body"].read()
            if got != b"data":
                broken.append((i, "get", got))
        except ClientError as e:
            broken.append((i, "get", http_status(e), error_code(e)))
        except BotoCoreError as e:
            broken.append((i, "get", type(e).__name__))
    assert broken == []


def test_cors_only_for_larders_origin(creds, larder):
    app = larder.base
    url = f"{creds.endpoint}/local/some-key"
    ok = requests.options(url, headers={"Origin": app, "Access-Control-Request-Method": "PUT",
                                        "Access-Control-Request-Headers": "authorization"},
                          timeout=10)
    assert ok.status_code == 200
    assert ok.headers.get("Access-Control-Allow-Origin") == app
    assert "PUT" in ok.headers.get("Access-Control-Allow-Methods", "")

    evil = requests.options(url, headers={"Origin": "http://evil.example",
                                          "Access-Control-Request-Method": "GET"}, timeout=10)
    assert evil.status_code == 403
    assert "Access-Control-Allow-Origin" not in evil.headers

    res = requests.get(f"{creds.endpoint}/local?list-type=2",
                       headers={"Origin": "http://evil.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in res.headers
