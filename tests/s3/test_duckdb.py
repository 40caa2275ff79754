"""Native DuckDB (PyPI duckdb 1.4.4) with the httpfs extension from PyPI (loaded from its file,
offline) reading and writing through Larder's S3 listener: hive-partitioned Parquet, globs
(which list), range reads, and a multipart write of a file over 100 MB."""

from __future__ import annotations

import importlib.metadata

import duckdb
import pytest

from support import s3_client


def httpfs_path() -> str:
    dist = importlib.metadata.distribution("duckdb-ext-httpfs")
    files = [f for f in dist.files or [] if f.name == "httpfs.duckdb_extension"]
    assert files, "duckdb-ext-httpfs ships no httpfs.duckdb_extension"
    return str(dist.locate_file(files[0]))


def connect(creds=None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    con.execute(f"LOAD '{httpfs_path()}'")
    con.execute("SET threads = 2")
    if creds is not None:
        endpoint = creds.endpoint.removeprefix("http://")
        con.execute(f"""
            CREATE SECRET larder (
                TYPE s3,
                KEY_ID '{creds.access_key_id}',
                SECRET '{creds.secret_access_key}',
                REGION '{creds.region}',
                ENDPOINT '{endpoint}',
                URL_STYLE 'path',
                USE_SSL false
            )""")
    return con


SALES = """
    SELECT
        i AS id,
        2023 + (i % 3) AS year,
        1 + ((i // 3) % 12) AS month,
        'store-' || (i % 17) AS store,
        round(((i * 7919) % 100003) / 100.0, 2) AS amount,
        (DATE '2023-01-01' + (i % 900)::INTEGER) AS day
    FROM range(60000) t(i)
"""


def test_httpfs_loads_offline():
    con = connect()
    loaded = dict(con.execute(
        "SELECT extension_name, loaded FROM duckdb_extensions() "
        "WHERE extension_name IN ('httpfs', 'parquet')").fetchall())
    assert loaded == {"httpfs": True, "parquet": True}


@pytest.mark.parametrize("which", ["listener", "browser"])
def test_hive_partitioned_round_trip(creds, backend, prefix, tmp_path, which):
    # The browser endpoint has a path (`/s3`): DuckDB signs it into the canonical URI.
    con = connect(creds.with_(endpoint=creds.url(which)))
    base = f"s3://{backend}/{prefix}sales"
    con.execute(f"COPY ({SALES}) TO '{base}' (FORMAT PARQUET, PARTITION_BY (year, month))")
    local = tmp_path / "sales"
    con.execute(f"COPY ({SALES}) TO '{local}' (FORMAT PARQUET, PARTITION_BY (year, month))")

    # The partition layout is what a local write makes.
    client = s3_client(creds)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=backend,
                                                                  Prefix=f"{prefix}sales/"):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    local_files = sorted(str(p.relative_to(local)) for p in local.rglob("*.parquet"))
    assert sorted(k.removeprefix(f"{prefix}sales/") for k in keys) == local_files
    assert len(local_files) == 36

    order = "ORDER BY id"
    remote_rows = con.execute(
        f"SELECT id, year, month, store, amount, day FROM read_parquet("
        f"'{base}/*/*/*.parquet', hive_partitioning = true) {order}").fetchall()
    local_rows = con.execute(
        f"SELECT id, year, month, store, amount, day FROM read_parquet("
        f"'{local}/*/*/*.parquet', hive_partitioning = true) {order}").fetchall()
    assert len(remote_rows) == 60000
    assert remote_rows == local_rows

    # Partition pruning through the listing: one month of one year.
    got = con.execute(
        f"SELECT count(*), sum(amount) FROM read_parquet('{base}/*/*/*.parquet', "
        f"hive_partitioning = true) WHERE year = 2024 AND month = 5").fetchone()
    want = con.execute(
        f"SELECT count(*), sum(amount) FROM ({SALES}) WHERE year = 2024 AND month = 5"
    ).fetchone()
    assert got == want

    # A single file read with range requests (Parquet footer first).
    one = f"{base}/year=2023/month=3/data_0.parquet"
    n = con.execute(f"SELECT count(*) FROM read_parquet('{one}')").fetchone()[0]
    assert n == con.execute(
        f"SELECT count(*) FROM ({SALES}) WHERE year = 2023 AND month = 3").fetchone()[0]

    # CSV and JSON through the proxy too.
    con.execute(f"COPY (SELECT * FROM ({SALES}) WHERE id < 1000) TO '{base}.csv' (HEADER)")
    csv_rows = con.execute(
        f"SELECT id, store, amount FROM read_csv('{base}.csv') ORDER BY id").fetchall()
    assert csv_rows == con.execute(
        f"SELECT id, store, amount FROM ({SALES}) WHERE id < 1000 ORDER BY id").fetchall()


BIG_ROWS = 14_000_000
# Exact binary fractions, so sums are exact and comparable; spread out like real measurements.
BIG = f"""
    SELECT i AS id, ((hash(i) % 1000003)::DOUBLE / 8.0) AS v
    FROM range({BIG_ROWS}) t(i)
"""
CHECK = "count(*), sum(id), sum(v), min(v), max(v), sum(v * (id % 7))"


def test_multipart_write_over_100mb(creds, backend, prefix):
    con = connect(creds)
    url = f"s3://{backend}/{prefix}big/measurements.parquet"
    con.execute(f"COPY ({BIG}) TO '{url}' (FORMAT PARQUET, COMPRESSION uncompressed, "
                f"ROW_GROUP_SIZE 1000000)")
    head = s3_client(creds).head_object(Bucket=backend, Key=f"{prefix}big/measurements.parquet")
    assert head["ContentLength"] > 100 * 1024 * 1024
    # DuckDB writes to S3 with a multipart upload.
    assert head["ETag"].rstrip('"').rsplit("-", 1)[-1].isdigit() and "-" in head["ETag"]

    got = con.execute(f"SELECT {CHECK} FROM read_parquet('{url}')").fetchone()
    want = con.execute(f"SELECT {CHECK} FROM ({BIG})").fetchone()
    assert got == want
    assert got[0] == BIG_ROWS
    client = s3_client(creds)
    client.delete_object(Bucket=backend, Key=f"{prefix}big/measurements.parquet")
