#!/usr/bin/env python3
"""The measuring half of `benches/s3-proxy.sh`: signs in to a running Larder, creates the test
objects, times transfers with curl and prints one table.

Run it through `benches/s3-proxy.sh`, which builds Larder, starts Larder, nginx and moto_server on
127.0.0.1, passes their addresses here, and removes everything afterwards.

Every number compares Larder with a baseline measured in the same run on the same machine, over
the same bytes on the same filesystem, in alternating rounds (the machines this runs on are
shared and noisy, so ratios mean more than absolute numbers):

- GET: presigned GETs through the S3 listener vs nginx (sendfile) serving the very same file.
- PUT: presigned PUTs through the S3 listener vs writing the bytes to a new file and fsyncing it
  (what `dd bs=1M conv=fsync` does, without a process per file); vs the same while hashing the
  bytes with MD5 (the ETag a PUT must answer), the floor for any S3 server that does so; vs
  hashing the bytes alone (MD5 cannot be split over cores, so this bounds any such PUT); the
  same PUTs sending `Content-MD5` vs not (what verifying it costs); and vs nginx's WebDAV PUT
  (which does not fsync).
- Ranged reads: per-request latency of 1 KiB and 1 MiB ranges at random offsets.
- An `s3` backend on moto_server: the first read of each 1 MiB range vs repeated reads of it
  (equal unless Larder caches ranges), and moto_server read directly.
- Peak RSS of the Larder process while it receives a 64 MiB and a 1 GiB PUT.

The timed work is done by curl (one process per stream, keep-alive, bodies to /dev/null);
Python only prepares URLs and reads curl's per-transfer `--write-out` lines.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import requests
from botocore.config import Config

MiB = 1 << 20
KiB = 1 << 10
BUCKET = "local"
MOTO_BUCKET = "larder-bench"
CURL_TIMEOUT_S = 300
SECTIONS = ("rss", "get", "put", "range", "cache")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# curl


@dataclass
class Transfer:
    code: int
    seconds: float
    down: int
    up: int


@dataclass
class Request:
    url: str
    out: str = "/dev/null"
    headers: list[str] = field(default_factory=list)
    upload: str | None = None
    method: str | None = None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(requests_: list[Request]) -> str:
    """A curl config file: one transfer per `--next` group, so each can have its own headers;
    curl still reuses the connection across groups."""
    groups = []
    for r in requests_:
        lines = [f"url = {_quote(r.url)}", f"output = {_quote(r.out)}", "globoff",
                 'write-out = "%{http_code} %{time_total} %{size_download} %{size_upload}\\n"',
                 # No `Expect: 100-continue` round trip before a body, for Larder and nginx alike.
                 'header = "Expect:"']
        lines += [f"header = {_quote(h)}" for h in r.headers]
        if r.upload:
            lines.append(f"upload-file = {_quote(r.upload)}")
        if r.method:
            lines.append(f"request = {r.method}")
        groups.append("\n".join(lines))
    return "\nnext\n".join(groups) + "\n"


def curl(streams: list[list[Request]], work: Path, ok=(200, 206)) -> tuple[float, list[Transfer]]:
    """Runs each stream in its own curl process (sequential requests on one connection), all
    streams at once; returns the wall time and every transfer. Fails on any unexpected status."""
    procs = []
    for i, stream in enumerate(streams):
        cfg = work / f"curl-{i}.cfg"
        cfg.write_text(_config(stream))
        procs.append(cfg)
    start = time.perf_counter()
    running = [subprocess.Popen(["curl", "-sS", "--max-time", str(CURL_TIMEOUT_S), "-K", str(c)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for c in procs]
    outs = []
    for p in running:
        try:
            out, err = p.communicate(timeout=CURL_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        outs.append((p.returncode, out, err))
    wall = time.perf_counter() - start
    transfers = []
    for rc, out, err in outs:
        lines = out.split()
        got = [Transfer(int(lines[i]), float(lines[i + 1]), int(float(lines[i + 2])),
                        int(float(lines[i + 3]))) for i in range(0, len(lines) - 3, 4)]
        bad = [t for t in got if t.code not in ok]
        if rc != 0 or bad:
            raise RuntimeError(f"curl exited {rc}; unexpected answers {bad[:3]}; stderr: {err}")
        transfers += got
    expected = sum(len(s) for s in streams)
    if len(transfers) != expected:
        raise RuntimeError(f"curl reported {len(transfers)} of {expected} transfers")
    return wall, transfers


# ---------------------------------------------------------------------------------------------
# Larder


class Larder:
    def __init__(self, login_url: str):
        self.base = login_url.split("/login/")[0]
        self.http = requests.Session()
        page = self.http.get(login_url, timeout=30)
        page.raise_for_status()
        form = {name: self._hidden(page.text, name) for name in ("token", "nonce")}
        res = self.http.post(f"{self.base}/login", data=form, timeout=30)
        res.raise_for_status()
        m = re.search(r'<meta name="csrf-token" content="([^"]+)"', res.text)
        if not m:
            raise RuntimeError(f"sign-in ended at {res.url} without a CSRF token")
        self.csrf = html.unescape(m.group(1))

    @staticmethod
    def _hidden(page: str, name: str) -> str:
        for pattern in (rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"',
                        rf'<input[^>]*value="([^"]*)"[^>]*name="{name}"'):
            m = re.search(pattern, page)
            if m:
                return html.unescape(m.group(1))
        raise RuntimeError(f"no hidden input {name!r} on the login page")

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(f"{self.base}{path}", headers={"X-CSRF-Token": self.csrf},
                              timeout=60, **kw)


def s3_client(endpoint: str, region: str, key_id: str, secret: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}, read_timeout=300))


# ---------------------------------------------------------------------------------------------
# Numbers


def pct(samples: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(samples)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def mibps(nbytes: int, seconds: float) -> float:
    return nbytes / MiB / seconds


@dataclass
class Row:
    case: str
    larder: float
    base_name: str
    base: float
    unit: str
    # "speed": bigger is better (MiB/s); "time": smaller is better (ms, MiB).
    kind: str = "speed"
    target: float | None = None
    note: str = ""
    # The lowest and highest ratio of single rounds (Larder and baseline measured back to back).
    spread: tuple[float, float] | None = None

    @property
    def ratio(self) -> float | None:
        if not self.larder or not self.base:
            return None
        return self.larder / self.base if self.kind == "speed" else self.base / self.larder


class Rounds:
    """Runs Larder and its baseline(s) in alternating order, `rounds` times, and keeps every
    round's number so the median is robust to a noisy neighbour."""

    def __init__(self, rounds: int):
        self.rounds = rounds

    def run(self, sides: dict[str, callable]) -> dict[str, list]:
        got: dict[str, list] = {name: [] for name in sides}
        names = list(sides)
        for r in range(self.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for name in order:
                got[name].append(sides[name]())
        return got


# ---------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = Path(a.work)
        self.src = self.work / "src"
        self.direct = self.work / "direct"
        self.www = Path(a.nginx_root)
        self.rows: list[Row] = []
        self.rss_rows: list[Row] = []  # measured first, printed last
        self.notes: list[str] = []
        self.results: dict = {}
        self.rounds = Rounds(a.rounds)
        self.rng = random.Random(a.seed)
        self.scale = 0.25 if a.quick else 1.0

    def n(self, count: int) -> int:
        return max(2, int(count * self.scale))

    # -- setup -------------------------------------------------------------------------------

    def setup(self):
        a = self.a
        for d in (self.src, self.direct):
            d.mkdir(parents=True, exist_ok=True)
        log("signing in")
        self.larder = Larder(Path(a.login_url_file).read_text().strip())
        res = self.larder.post("/api/storage/proxy-credentials", json={"ttl_seconds": 4 * 3600})
        if res.status_code != 201:
            raise RuntimeError(f"minting proxy credentials: {res.status_code} {res.text}")
        creds = res.json()
        self.endpoint = creds["endpoint"].rstrip("/")
        self.s3 = s3_client(self.endpoint, creds["region"], creds["access_key_id"],
                            creds["secret_access_key"])
        log(f"S3 listener at {self.endpoint}")

        log("writing source files (incompressible bytes)")
        # Random bytes come at ~50 MB/s here, so one random block is rotated by a random amount
        # for every block written: no two blocks (or 1 MiB ranges) are alike, at memcpy speed.
        block = os.urandom(16 * MiB)
        self.files = {}
        for name, size in (("1m", MiB), ("64m", 64 * MiB), ("256m", 256 * MiB),
                           ("1g", 1024 * MiB)):
            path = self.src / f"src-{name}"
            with open(path, "wb") as f:
                left = size
                while left:
                    turn = self.rng.randrange(len(block))
                    chunk = (block[turn:] + block[:turn])[:left]
                    f.write(chunk)
                    left -= len(chunk)
            self.files[name] = path

        log("creating the GET objects through the proxy (boto3)")
        self.s3.put_object(Bucket=BUCKET, Key="bench/get-1m", Body=self.files["1m"].read_bytes())
        self.s3.upload_file(str(self.files["256m"]), BUCKET, "bench/get-256m")
        # nginx serves the very files Larder stores them as.
        self.nginx_get = {}
        for name in ("1m", "256m"):
            # The `local` backend keeps objects as files under storage/users/<id>/local/.
            found = list(Path(a.data_dir).glob(f"storage/users/*/local/bench/get-{name}"))
            if len(found) != 1:
                raise RuntimeError(f"expected one stored file for bench/get-{name}, got {found}")
            rel = found[0].relative_to(Path(a.data_dir) / "storage" / "users")
            self.nginx_get[name] = f"{a.nginx_url}/get/{rel}"
        self.get_url = {name: self.presign("get_object", f"bench/get-{name}")
                        for name in ("1m", "256m")}
        for name in ("1m", "256m"):
            self.check_same_bytes(name)

    def presign(self, op: str, key: str, bucket: str = BUCKET, client=None) -> str:
        client = client or self.s3
        return client.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key},
                                             ExpiresIn=3 * 3600)

    def check_same_bytes(self, name: str):
        want = hashlib.md5(self.files[name].read_bytes()).hexdigest()
        for who, url in (("larder", self.get_url[name]), ("nginx", self.nginx_get[name])):
            out = self.work / f"check-{who}"
            curl([[Request(url, out=str(out))]], self.work)
            got = hashlib.md5(out.read_bytes()).hexdigest()
            out.unlink()
            if got != want:
                raise RuntimeError(f"{who} served different bytes for {name}")

    # -- 1. GET ------------------------------------------------------------------------------

    def get_throughput(self, name: str, size: int, count: int, parallel: int, label: str):
        per = max(1, count // parallel)
        total = per * parallel * size

        def side(url):
            def run():
                curl([[Request(url)] * 2], self.work)  # warm the connection path and caches
                wall, _ = curl([[Request(url)] * per for _ in range(parallel)], self.work)
                return mibps(total, wall)
            return run

        got = self.rounds.run({"larder": side(self.get_url[name]),
                               "nginx": side(self.nginx_get[name])})
        self.record(label, got, "nginx", "MiB/s", target=0.8)

    # -- 2. PUT ------------------------------------------------------------------------------

    def put_throughput(self, name: str, size: int, count: int, label: str):
        src = str(self.files[name])
        keys = [f"bench/put-{name}/{i:04d}" for i in range(count)]
        urls = [self.presign("put_object", k) for k in keys]
        nginx_urls = [f"{self.a.nginx_url}/put/{name}/{i:04d}" for i in range(count)]
        nginx_dir = self.www / "put" / name

        content_md5 = "Content-MD5: " + base64.b64encode(md5_file(src)).decode()

        def larder_with(headers: list[str]):
            def run():
                os.sync()
                wall, _ = curl([[Request(u, upload=src, headers=headers) for u in urls]],
                               self.work, ok=(200,))
                for k in keys:
                    self.s3.delete_object(Bucket=BUCKET, Key=k)
                return mibps(count * size, wall)
            return run

        def direct_with(md5: bool):
            def run():
                os.sync()
                start = time.perf_counter()
                for i in range(count):
                    direct_write(src, self.direct / f"{name}-{i:04d}", md5=md5)
                wall = time.perf_counter() - start
                for i in range(count):
                    (self.direct / f"{name}-{i:04d}").unlink()
                return mibps(count * size, wall)
            return run

        def md5_alone():
            start = time.perf_counter()
            for _ in range(count):
                md5_file(src)
            return mibps(count * size, time.perf_counter() - start)

        def nginx():
            os.sync()
            wall, _ = curl([[Request(u, upload=src) for u in nginx_urls]], self.work,
                           ok=(201, 204))
            for f in nginx_dir.iterdir():
                f.unlink()
            return mibps(count * size, wall)

        got = self.rounds.run({"larder": larder_with([]), "direct": direct_with(False),
                               "content_md5": larder_with([content_md5]),
                               "direct_md5": direct_with(True), "nginx": nginx,
                               "md5": md5_alone})
        self.record(label, got, "direct", "MiB/s", target=0.8)
        self.record(label + "  (vs the same + MD5)",
                    {"larder": got["larder"], "direct_md5": got["direct_md5"]}, "direct_md5",
                    "MiB/s")
        self.record(label + "  (vs MD5 alone: the ceiling)",
                    {"larder": got["larder"], "md5": got["md5"]}, "md5", "MiB/s")
        self.record(label + "  (with Content-MD5, vs without)",
                    {"larder": got["content_md5"], "without": got["larder"]}, "without",
                    "MiB/s")
        self.record(label + "  (nginx PUT, no fsync)", {"larder": got["larder"],
                                                       "nginx": got["nginx"]},
                    "nginx", "MiB/s")

    # -- 3. ranged latency -------------------------------------------------------------------

    def range_latency(self, length: int, count: int, label: str):
        size = self.files["256m"].stat().st_size
        offsets = [self.rng.randrange(0, size - length) for _ in range(count)]

        def side(url):
            def run():
                reqs = [Request(url, headers=[f"Range: bytes={o}-{o + length - 1}"])
                        for o in offsets]
                _, ts = curl([reqs], self.work, ok=(206,))
                if any(t.down != length for t in ts):
                    raise RuntimeError(f"a ranged GET returned the wrong length ({label})")
                return [t.seconds * 1000 for t in ts]
            return run

        got = self.rounds.run({"larder": side(self.get_url["256m"]),
                               "nginx": side(self.nginx_get["256m"])})
        pooled = {k: [x for r in v for x in r] for k, v in got.items()}
        for p in (50, 95):
            per_round = [pct(b, p) / pct(l, p) for l, b in zip(got["larder"], got["nginx"])]
            self.rows.append(Row(f"{label} p{p}", pct(pooled["larder"], p), "nginx",
                                 pct(pooled["nginx"], p), "ms", kind="time",
                                 spread=(min(per_round), max(per_round))))
        self.results[label] = {k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v)}
                               for k, v in pooled.items()}

    # -- 4. s3 backend cache -----------------------------------------------------------------

    def s3_cache(self):
        a = self.a
        moto = s3_client(a.moto_url, "us-east-1", "x", "x")
        moto.create_bucket(Bucket=MOTO_BUCKET)
        key = "bench/cache-64m"
        log("uploading 64 MiB straight to moto_server")
        moto.upload_file(str(self.files["64m"]), MOTO_BUCKET, key)
        res = self.larder.post("/api/storage/backends", json={
            "name": "moto", "endpoint": a.moto_url, "region": "us-east-1",
            "bucket": MOTO_BUCKET, "access_key_id": "x", "secret_access_key": "x"})
        if res.status_code != 201:
            raise RuntimeError(f"adding the moto backend: {res.status_code} {res.text}")
        through = self.presign("get_object", key, bucket="moto")
        direct = self.presign("get_object", key, bucket=MOTO_BUCKET, client=moto)
        # 16 ranges, each inside its own 4 MiB slot, so no two share a cache block of <= 4 MiB
        # and every first read is a miss.
        slots = self.n(16) if self.a.quick else 16
        slot = 4 * MiB
        ranges = [(s * slot + self.rng.randrange(0, slot - MiB + 1)) for s in range(slots)]

        def reqs(url):
            return [Request(url, headers=[f"Range: bytes={o}-{o + MiB - 1}"]) for o in ranges]

        _, first = curl([reqs(through)], self.work, ok=(206,))
        _, moto_direct = curl([reqs(direct)], self.work, ok=(206,))
        again = []
        for _ in range(3):
            _, ts = curl([reqs(through)], self.work, ok=(206,))
            again += ts
        # The bytes of a repeated (possibly cached) read are the object's.
        out = self.work / "check-range"
        curl([[Request(through, out=str(out),
                       headers=[f"Range: bytes={ranges[0]}-{ranges[0] + MiB - 1}"])]],
             self.work, ok=(206,))
        with open(self.files["64m"], "rb") as f:
            f.seek(ranges[0])
            if out.read_bytes() != f.read(MiB):
                raise RuntimeError("a repeated ranged read through the s3 backend returned "
                                   "wrong bytes")
        out.unlink()
        ms = {k: [t.seconds * 1000 for t in v]
              for k, v in (("first", first), ("again", again), ("moto", moto_direct))}
        self.rows.append(Row("s3 backend (moto) 1 MiB range, 1st read p50", pct(ms["first"], 50),
                             "moto direct", pct(ms["moto"], 50), "ms", kind="time"))
        self.rows.append(Row("s3 backend (moto) 1 MiB range, repeat p50", pct(ms["again"], 50),
                             "Larder 1st read", pct(ms["first"], 50), "ms", kind="time",
                             note="ratio = cache speed-up; ~1.0 = not cached"))
        self.rows.append(Row("s3 backend (moto) 1 MiB range, repeat p95", pct(ms["again"], 95),
                             "Larder 1st read", pct(ms["first"], 95), "ms", kind="time"))
        self.results["s3_cache_ms"] = {k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v),
                                           "all": v} for k, v in ms.items()}

    # -- 5. RSS ------------------------------------------------------------------------------

    def rss(self):
        pid = self.a.larder_pid
        for name, size in (("64m", 64 * MiB), ("1g", 1024 * MiB)):
            key = f"bench/rss-{name}"
            url = self.presign("put_object", key)
            time.sleep(0.5)
            before = vmrss_mib(pid)
            sampler = RssSampler(pid)
            sampler.start()
            try:
                wall, _ = curl([[Request(url, upload=str(self.files[name]))]], self.work,
                               ok=(200,))
            finally:
                peak = sampler.stop()
            self.results[f"rss_{name}"] = {"before_mib": before, "peak_mib": peak,
                                           "samples": sampler.samples,
                                           "put_mib_s": mibps(size, wall)}
            self.s3.delete_object(Bucket=BUCKET, Key=key)
            log(f"RSS {name} PUT: before {before:.1f} MiB, peak {peak:.1f} MiB "
                f"({sampler.samples} samples, {mibps(size, wall):.0f} MiB/s)")
        r64, r1g = self.results["rss_64m"], self.results["rss_1g"]
        self.rss_rows.append(Row("Larder RSS before the 64 MiB PUT", r64["before_mib"], "", 0,
                             "MiB", kind="time"))
        self.rss_rows.append(Row("Larder peak RSS during a 64 MiB PUT", r64["peak_mib"], "", 0,
                             "MiB", kind="time"))
        self.rss_rows.append(Row("Larder RSS before the 1 GiB PUT", r1g["before_mib"], "", 0,
                             "MiB", kind="time"))
        self.rss_rows.append(Row("Larder peak RSS during a 1 GiB PUT", r1g["peak_mib"],
                             "peak @64 MiB", r64["peak_mib"], "MiB", kind="time",
                             note="ratio ~1.0 = memory independent of object size"))

    # -- bookkeeping -------------------------------------------------------------------------

    def record(self, label, got, key, unit, target=None):
        """A row from per-round numbers: `got[key]` is the baseline; medians compared."""
        base_name = {"direct": "write+fsync", "direct_md5": "write+md5+fsync",
                     "md5": "MD5 alone", "without": "no Content-MD5"}.get(key, key)
        larder = statistics.median(got["larder"])
        base = statistics.median(got[key])
        per_round = [x / y for x, y in zip(got["larder"], got[key])]
        self.rows.append(Row(label, larder, base_name, base, unit, target=target,
                             spread=(min(per_round), max(per_round))))
        self.results[label] = dict(got)
        log(f"{label}: larder {fmt_list(got['larder'])}  {base_name} {fmt_list(got[key])}")

    def run(self, only: set[str]):
        self.setup()
        if "rss" in only:
            log("5. RSS during PUTs (first, so earlier tests do not inflate the heap)")
            self.rss()
        if "get" in only:
            log("1. GET throughput")
            self.get_throughput("1m", MiB, self.n(200), 1,
                                "GET 1 MiB x%d sequential" % self.n(200))
            self.get_throughput("1m", MiB, self.n(400), 4,
                                "GET 1 MiB x%d, 4 parallel" % self.n(400))
            self.get_throughput("256m", 256 * MiB, 4, 1, "GET 256 MiB x4 sequential")
        if "put" in only:
            log("2. PUT throughput")
            self.put_throughput("1m", MiB, self.n(100), "PUT 1 MiB x%d sequential" % self.n(100))
            self.put_throughput("256m", 256 * MiB, 2, "PUT 256 MiB x2 sequential")
        if "range" in only:
            log("3. ranged-read latency")
            self.range_latency(KiB, self.n(300), "range 1 KiB GET")
            self.range_latency(MiB, self.n(200), "range 1 MiB GET")
        if "cache" in only:
            log("4. s3 backend: uncached vs cached ranges")
            self.s3_cache()
        self.rows += self.rss_rows


def md5_file(src: str) -> bytes:
    """MD5 of a file (in the page cache), 1 MiB at a time, with OpenSSL on one core: what no
    PUT that answers an MD5 ETag can beat, however it overlaps receiving and writing."""
    digest = hashlib.md5()
    with open(src, "rb", buffering=0) as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.digest()


def direct_write(src: str, dst: Path, md5: bool = False) -> None:
    """The baseline for a PUT: the same bytes into a new file on the same filesystem, 1 MiB at
    a time, then fsync (as `dd if=src of=dst bs=1M conv=fsync`). With `md5`, each chunk is
    also hashed before it is written (OpenSSL's MD5), as a PUT must to answer its ETag."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    digest = hashlib.md5() if md5 else None
    try:
        with open(src, "rb", buffering=0) as f:
            while chunk := f.read(MiB):
                if digest:
                    digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def vmrss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RssSampler(threading.Thread):
    """Samples VmRSS every ~20 ms (bounded: at most 30,000 samples) until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0.0, 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set() and self.samples < 30_000:
            self.peak = max(self.peak, vmrss_mib(self.pid))
            self.samples += 1
            self._halt.wait(0.02)

    def stop(self) -> float:
        self._halt.set()
        self.join(timeout=5)
        return max(self.peak, vmrss_mib(self.pid))


def fmt_list(xs) -> str:
    return "[" + ", ".join(f"{x:.1f}" for x in xs) + "]"


def table(rows: list[Row]) -> str:
    head = ("case", "Larder", "baseline", "ratio (rounds: min-max)", "target")
    body = []
    for r in rows:
        ratio = r.ratio
        mark = ""
        if r.target is not None and ratio is not None:
            mark = f">= {r.target:g} " + ("ok" if ratio >= r.target else "MISSED")
        base = f"{r.base:.2f} {r.unit} ({r.base_name})" if r.base_name else ""
        shown = ""
        if ratio is not None and r.base_name:
            shown = f"{ratio:.2f}"
            if r.spread and r.spread[0] != r.spread[1]:
                shown += f"  ({r.spread[0]:.2f}-{r.spread[1]:.2f})"
        body.append((r.case, f"{r.larder:.2f} {r.unit}", base, shown, mark))
        if r.note:
            body.append(("  " + r.note, "", "", "", ""))
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True, help="scratch directory (removed by the caller)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--login-url-file", required=True)
    p.add_argument("--larder-pid", type=int, required=True)
    p.add_argument("--nginx-url", required=True)
    p.add_argument("--nginx-root", required=True)
    p.add_argument("--moto-url", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections to run (default: all): " + ",".join(SECTIONS))
    a = p.parse_args()
    bench = Bench(a)
    started = time.monotonic()
    only = set(a.only.split(","))
    if not only <= set(SECTIONS):
        p.error(f"--only takes some of {','.join(SECTIONS)}")
    bench.run(only)
    print()
    print(f"Larder S3 proxy benchmark ({a.rounds} alternating rounds per case; "
          f"{time.monotonic() - started:.0f} s)")
    print("ratio = Larder's speed / the baseline's (for times: baseline ms / Larder ms); "
          "1.00 = parity, above 1 = Larder faster.")
    print("Throughputs are medians of the rounds; latency percentiles pool every round's "
          "requests; (min-max) is the ratio's range over single rounds.")
    print()
    print(table(bench.rows))
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"rows": [dict(r.__dict__, ratio=r.ratio) for r in bench.rows],
             "raw": bench.results}, indent=1, default=str))


if __name__ == "__main__":
    main()
