//! Tests of the local backend, each against a fresh temp directory.

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use md5::{Digest, Md5};

use super::LocalBackend;
use crate::storage::{
    Backend, ByteRange, ByteStream, GetObject, ListRequest, ObjectKey, PutOptions, RangeRequest,
    StorageError,
};

const MIB: usize = 1024 * 1024;

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

fn backend() -> (tempfile::TempDir, LocalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::new(dir.path().join("users/u1/local"));
    (dir, backend)
}

fn root(backend: &LocalBackend) -> &Path {
    &backend.layout.root
}

fn body(data: impl Into<Bytes>) -> ByteStream {
    let data = data.into();
    Box::pin(stream::once(async move { Ok(data) }))
}

fn chunks(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(Ok)))
}

/// `n` MiB-sized chunks, then an error (as a signature check failing at the end would).
fn failing_after(n: usize) -> ByteStream {
    let good = (0..n).map(|_| Ok(Bytes::from(vec![7u8; MIB])));
    let bad = std::iter::once(Err(io::Error::other("signature mismatch")));
    Box::pin(stream::iter(good.chain(bad)))
}

async fn put(b: &LocalBackend, k: &str, data: &[u8]) -> crate::storage::ObjectMeta {
    b.put(
        &key(k),
        body(data.to_vec()),
        Some(data.len() as u64),
        &PutOptions::default(),
    )
    .await
    .unwrap()
}

async fn read(get: GetObject) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = get.body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn content(b: &LocalBackend, k: &str) -> Vec<u8> {
    read(b.get(&key(k), None).await.unwrap()).await
}

fn md5_bytes(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode(md5_bytes(data)))
}

fn temp_files(b: &LocalBackend) -> Vec<String> {
    match std::fs::read_dir(&b.layout.tmp) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The proxy passes the `Content-MD5` its body stream has checked; the backend takes it for the
/// ETag rather than hash the body again (which is why a wrong one here shows: nothing else
/// would let it through).
#[tokio::test]
async fn a_content_md5_given_is_the_etag_without_a_second_hash() {
    let (_dir, b) = backend();
    let declared = [7u8; 16];
    let opts = PutOptions {
        content_md5: Some(declared),
        ..PutOptions::default()
    };
    let put = b
        .put(&key("a"), body(part_data(300_000, 1)), None, &opts)
        .await
        .unwrap();
    assert_eq!(put.etag, format!("\"{}\"", hex::encode(declared)));
    assert_eq!(
        read(b.get(&key("a"), None).await.unwrap()).await,
        part_data(300_000, 1)
    );

    let id = b.create_multipart(&key("m"), None).await.unwrap();
    let part = b
        .upload_part(&key("m"), &id, 1, body(&b"x"[..]), None, Some(declared))
        .await
        .unwrap();
    assert_eq!(part.etag, put.etag);
}

#[tokio::test]
async fn round_trip_with_metadata() {
    let (_dir, b) = backend();
    let opts = PutOptions {
        content_type: Some("text/csv".into()),
        ..PutOptions::default()
    };
    let data = b"id,name\n1,ada\n";
    let put = b
        .put(
            &key("reports/2026/people.csv"),
            body(&data[..]),
            None,
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(put.key, "reports/2026/people.csv");
    assert_eq!(put.size, data.len() as u64);
    assert_eq!(put.etag, quoted_md5(data));
    assert_eq!(put.content_type.as_deref(), Some("text/csv"));
    assert!(put.last_modified > 1_700_000_000_000);

    assert_eq!(b.head(&key("reports/2026/people.csv")).await.unwrap(), put);
    let got = b.get(&key("reports/2026/people.csv"), None).await.unwrap();
    assert_eq!(got.meta, put);
    assert_eq!(got.range, None);
    assert_eq!(read(got).await, data);

    // A plain file at the key's path, visible to a person.
    let on_disk = std::fs::read(root(&b).join("reports/2026/people.csv")).unwrap();
    assert_eq!(on_disk, data);
    assert!(temp_files(&b).is_empty());

    assert!(
        matches!(b.head(&key("reports/missing")).await, Err(StorageError::NotFound(k)) if k == "reports/missing")
    );
    assert!(
        matches!(
            b.get(&key("reports"), None).await,
            Err(StorageError::NotFound(_))
        ),
        "a folder is not an object"
    );
    assert!(matches!(
        b.head(&key("reports/2026/people.csv/x")).await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn empty_objects_and_overwrites() {
    let (_dir, b) = backend();
    let empty = put(&b, "empty", b"").await;
    assert_eq!(empty.size, 0);
    assert_eq!(empty.etag, quoted_md5(b""));
    assert_eq!(content(&b, "empty").await, b"");

    put(&b, "k", b"first").await;
    let second = put(&b, "k", b"second version").await;
    assert_eq!(b.head(&key("k")).await.unwrap(), second);
    assert_eq!(content(&b, "k").await, b"second version");
}

#[tokio::test]
async fn ranged_reads() {
    let (_dir, b) = backend();
    let data: Vec<u8> = (0..100u8).collect();
    put(&b, "r", &data).await;
    let b = &b;
    let ranged = |range| async move {
        let got = b.get(&key("r"), Some(range)).await?;
        let range = got.range;
        Ok::<_, StorageError>((range, read(got).await))
    };

    let (range, bytes) = ranged(RangeRequest::From {
        start: 10,
        end: Some(19),
    })
    .await
    .unwrap();
    assert_eq!(range, Some(ByteRange { start: 10, end: 19 }));
    assert_eq!(bytes, &data[10..20]);

    let (_, bytes) = ranged(RangeRequest::From {
        start: 90,
        end: None,
    })
    .await
    .unwrap();
    assert_eq!(bytes, &data[90..]);
    let (_, bytes) = ranged(RangeRequest::From {
        start: 95,
        end: Some(1000),
    })
    .await
    .unwrap();
    assert_eq!(bytes, &data[95..]);
    let (range, bytes) = ranged(RangeRequest::Suffix(10)).await.unwrap();
    assert_eq!(range, Some(ByteRange { start: 90, end: 99 }));
    assert_eq!(bytes, &data[90..]);
    let (_, bytes) = ranged(RangeRequest::Suffix(1000)).await.unwrap();
    assert_eq!(bytes, data);
    let (_, bytes) = ranged(RangeRequest::From {
        start: 0,
        end: Some(0),
    })
    .await
    .unwrap();
    assert_eq!(bytes, &data[..1]);

    for unsatisfiable in [
        RangeRequest::From {
            start: 100,
            end: None,
        },
        RangeRequest::Suffix(0),
    ] {
        assert!(matches!(
            ranged(unsatisfiable).await,
            Err(StorageError::InvalidRange { size: 100 })
        ));
    }
    put(b, "empty", b"").await;
    assert!(matches!(
        b.get(&key("empty"), Some(RangeRequest::Suffix(5))).await,
        Err(StorageError::InvalidRange { size: 0 })
    ));
}

#[tokio::test]
async fn ranges_across_read_chunks() {
    let (_dir, b) = backend();
    let chunk = super::READ_CHUNK_BYTES as u64;
    let data = part_data(3 * super::READ_CHUNK_BYTES + 1000, 3);
    put(&b, "c", &data).await;
    // The first chunk is read with the open; the rest is read ahead: ranges that end inside
    // the first chunk, exactly at its end, one byte after, and across every chunk.
    for (start, end) in [
        (0, 9),
        (0, chunk - 1),
        (0, chunk),
        (chunk - 1, chunk),
        (5, 3 * chunk + 999),
        (chunk + 7, 3 * chunk + 2),
        (3 * chunk + 999, 3 * chunk + 999),
    ] {
        let got = b
            .get(
                &key("c"),
                Some(RangeRequest::From {
                    start,
                    end: Some(end),
                }),
            )
            .await
            .unwrap();
        assert_eq!(got.range, Some(ByteRange { start, end }));
        let bytes = read(got).await;
        assert!(
            bytes == data[start as usize..=end as usize],
            "range {start}-{end}: {} bytes",
            bytes.len()
        );
    }
    assert!(content(&b, "c").await == data);
}

#[tokio::test]
async fn an_object_truncated_while_read_fails_the_body() {
    let (_dir, b) = backend();
    // Larger than what is read before anyone consumes (the first chunk and the one after).
    let data = part_data(16 * super::READ_CHUNK_BYTES, 5);
    put(&b, "t", &data).await;
    let got = b.get(&key("t"), None).await.unwrap();
    // Cut the file (as a person editing the folder might) while the body is being read.
    std::fs::OpenOptions::new()
        .write(true)
        .open(root(&b).join("t"))
        .unwrap()
        .set_len(100)
        .unwrap();
    let mut body = got.body;
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        if let Err(e) = chunk {
            failed = Some(e);
            break;
        }
    }
    let failed = failed.expect("a short body must end in an error, not quietly");
    assert_eq!(failed.kind(), io::ErrorKind::UnexpectedEof, "{failed}");
}

#[tokio::test]
async fn a_failed_body_leaves_nothing_behind() {
    let (_dir, b) = backend();
    put(&b, "kept", b"old").await;

    let err = b
        .put(&key("kept"), failing_after(3), None, &PutOptions::default())
        .await;
    assert!(matches!(err, Err(StorageError::Io(e)) if e.to_string() == "signature mismatch"));
    assert_eq!(content(&b, "kept").await, b"old");
    assert_eq!(b.head(&key("kept")).await.unwrap().etag, quoted_md5(b"old"));

    let err = b
        .put(
            &key("new/folder/key"),
            failing_after(2),
            None,
            &PutOptions::default(),
        )
        .await;
    assert!(err.is_err());
    assert!(matches!(
        b.head(&key("new/folder/key")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(
        !root(&b).join("new").exists(),
        "folders are made only at commit"
    );
    assert!(temp_files(&b).is_empty(), "{:?}", temp_files(&b));
}

#[tokio::test]
async fn announced_sizes_are_checked() {
    let (_dir, b) = backend();
    let short = b
        .put(
            &key("s"),
            body(&b"12345"[..]),
            Some(10),
            &PutOptions::default(),
        )
        .await;
    assert!(matches!(
        short,
        Err(StorageError::IncompleteBody {
            expected: 10,
            actual: 5
        })
    ));
    let long = b
        .put(
            &key("s"),
            body(&b"12345"[..]),
            Some(3),
            &PutOptions::default(),
        )
        .await;
    assert!(matches!(
        long,
        Err(StorageError::IncompleteBody { expected: 3, .. })
    ));
    assert!(matches!(
        b.head(&key("s")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(temp_files(&b).is_empty());
}

#[tokio::test]
async fn conditional_puts() {
    let (_dir, b) = backend();
    let create = PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    };
    let first = b
        .put(&key("c"), body(&b"one"[..]), None, &create)
        .await
        .unwrap();
    let again = b.put(&key("c"), body(&b"two"[..]), None, &create).await;
    assert!(matches!(again, Err(StorageError::PreconditionFailed)));
    assert_eq!(content(&b, "c").await, b"one");

    let if_match = |etag: &str| PutOptions {
        if_match: Some(etag.to_owned()),
        ..PutOptions::default()
    };
    let wrong = b
        .put(
            &key("c"),
            body(&b"two"[..]),
            None,
            &if_match(&quoted_md5(b"zzz")),
        )
        .await;
    assert!(matches!(wrong, Err(StorageError::PreconditionFailed)));
    assert_eq!(content(&b, "c").await, b"one");

    let second = b
        .put(&key("c"), body(&b"two"[..]), None, &if_match(&first.etag))
        .await
        .unwrap();
    assert_eq!(content(&b, "c").await, b"two");
    // Unquoted ETags and `*` are accepted too.
    let unquoted = second.etag.trim_matches('"').to_owned();
    b.put(&key("c"), body(&b"three"[..]), None, &if_match(&unquoted))
        .await
        .unwrap();
    b.put(&key("c"), body(&b"four"[..]), None, &if_match("*"))
        .await
        .unwrap();
    assert_eq!(content(&b, "c").await, b"four");

    let missing = b
        .put(&key("nope"), body(&b"x"[..]), None, &if_match(&first.etag))
        .await;
    assert!(matches!(missing, Err(StorageError::NotFound(_))));
    assert!(temp_files(&b).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_have_one_winner() {
    let (_dir, b) = backend();
    let b = Arc::new(b);
    let create = PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    };
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let (b, create) = (b.clone(), create.clone());
            tokio::spawn(async move {
                let body = chunks(vec![Bytes::from(vec![i; 1000]), Bytes::from(vec![i; 1000])]);
                (
                    i,
                    b.put(&key("race/winner"), body, Some(2000), &create).await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(StorageError::PreconditionFailed)) => {}
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(content(&b, "race/winner").await, vec![winners[0]; 2000]);
    assert!(temp_files(&b).is_empty());
}

#[tokio::test]
async fn etag_is_the_md5_of_the_content() {
    let (_dir, b) = backend();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let meta = b
        .put(
            &key("m"),
            chunks(data.chunks(4096).map(Bytes::copy_from_slice).collect()),
            None,
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(meta.etag, quoted_md5(&data));
    assert_eq!(b.head(&key("m")).await.unwrap().etag, quoted_md5(&data));
}

#[tokio::test]
async fn files_dropped_in_by_hand_get_a_sidecar() {
    let (_dir, b) = backend();
    let path = root(&b).join("dropped/by/hand.csv");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"a,b\n").unwrap();

    let meta = b.head(&key("dropped/by/hand.csv")).await.unwrap();
    assert_eq!(meta.etag, quoted_md5(b"a,b\n"));
    assert_eq!(meta.content_type, None);
    assert!(b.layout.meta.join("dropped/by/hand.csv").is_file());

    // Edited by hand: noticed and rehashed.
    std::fs::write(&path, b"a,b\n1,2\n").unwrap();
    let got = b.get(&key("dropped/by/hand.csv"), None).await.unwrap();
    assert_eq!(got.meta.etag, quoted_md5(b"a,b\n1,2\n"));
    assert_eq!(read(got).await, b"a,b\n1,2\n");

    // A range of a file edited by hand: rehashed first, then read from the range's start.
    std::fs::write(&path, b"a,b\n3,4\n").unwrap();
    let range = RangeRequest::From {
        start: 4,
        end: Some(6),
    };
    let got = b
        .get(&key("dropped/by/hand.csv"), Some(range))
        .await
        .unwrap();
    assert_eq!(got.meta.etag, quoted_md5(b"a,b\n3,4\n"));
    assert_eq!(read(got).await, b"3,4");
}

#[tokio::test]
async fn a_key_cannot_be_both_object_and_folder() {
    let (_dir, b) = backend();
    put(&b, "a", b"file").await;
    let under = b
        .put(&key("a/b"), body(&b"x"[..]), None, &PutOptions::default())
        .await;
    assert!(
        matches!(&under, Err(StorageError::Conflict(m)) if m.contains("\"a\" is an object")),
        "{under:?}"
    );
    let deeper = b
        .put(&key("a/b/c"), body(&b"x"[..]), None, &PutOptions::default())
        .await;
    assert!(matches!(deeper, Err(StorageError::Conflict(_))));

    put(&b, "c/d", b"file").await;
    let over = b
        .put(&key("c"), body(&b"x"[..]), None, &PutOptions::default())
        .await;
    assert!(
        matches!(&over, Err(StorageError::Conflict(m)) if m.contains("objects exist under \"c/\"")),
        "{over:?}"
    );
    assert!(matches!(
        b.copy(&key("a"), &key("c")).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(matches!(
        b.create_multipart(&key("a/x"), None).await,
        Err(StorageError::Conflict(_))
    ));

    assert_eq!(content(&b, "a").await, b"file");
    assert_eq!(content(&b, "c/d").await, b"file");
    assert!(temp_files(&b).is_empty());
}

#[tokio::test]
async fn overlong_segments_are_refused() {
    let (_dir, b) = backend();
    let long = format!("dir/{}", "x".repeat(256));
    let err = b
        .put(&key(&long), body(&b"x"[..]), None, &PutOptions::default())
        .await;
    assert!(matches!(err, Err(StorageError::InvalidKey(_))));
    assert!(matches!(
        b.head(&key(&long)).await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn delete_removes_empty_folders_and_is_idempotent() {
    let (_dir, b) = backend();
    put(&b, "x/y/z", b"1").await;
    put(&b, "x/w", b"2").await;

    b.delete(&key("x/y/z")).await.unwrap();
    assert!(matches!(
        b.head(&key("x/y/z")).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(!root(&b).join("x/y").exists());
    assert!(!b.layout.meta.join("x/y").exists());
    assert!(root(&b).join("x/w").is_file());

    b.delete(&key("x/y/z")).await.unwrap();
    b.delete(&key("never/was")).await.unwrap();
    b.delete(&key("x")).await.unwrap(); // a folder, not an object: nothing happens
    assert!(root(&b).join("x/w").is_file());

    b.delete(&key("x/w")).await.unwrap();
    assert!(!root(&b).join("x").exists());
    assert!(!b.layout.meta.join("x").exists());
    assert!(root(&b).is_dir(), "the root stays");

    // The key can now be an object rather than a folder.
    put(&b, "x", b"now a file").await;
    assert_eq!(content(&b, "x").await, b"now a file");
}

#[tokio::test]
async fn copy_keeps_content_type_and_etag() {
    let (_dir, b) = backend();
    let opts = PutOptions {
        content_type: Some("application/json".into()),
        ..PutOptions::default()
    };
    let src = b
        .put(&key("src.json"), body(&b"{\"a\":1}"[..]), None, &opts)
        .await
        .unwrap();
    put(&b, "copies/dst.json", b"to be replaced").await;

    let copied = b
        .copy(&key("src.json"), &key("copies/dst.json"))
        .await
        .unwrap();
    assert_eq!(copied.etag, src.etag);
    assert_eq!(copied.size, src.size);
    assert_eq!(copied.content_type.as_deref(), Some("application/json"));
    assert_eq!(b.head(&key("copies/dst.json")).await.unwrap(), copied);
    assert_eq!(content(&b, "copies/dst.json").await, b"{\"a\":1}");
    assert_eq!(content(&b, "src.json").await, b"{\"a\":1}");

    let missing = b.copy(&key("missing"), &key("elsewhere")).await;
    assert!(matches!(missing, Err(StorageError::NotFound(k)) if k == "missing"));
    assert!(temp_files(&b).is_empty());
}

/// A lazily made 1 MiB chunk of the test pattern.
fn pattern_chunk(i: usize) -> Bytes {
    Bytes::from(vec![(i * 31 % 251) as u8; MIB])
}

#[tokio::test]
async fn a_large_put_streams() {
    let (_dir, b) = backend();
    const CHUNKS: usize = 64;
    let stream = stream::iter((0..CHUNKS).map(|i| Ok(pattern_chunk(i))));
    let meta = b
        .put(
            &key("big.bin"),
            Box::pin(stream),
            Some((CHUNKS * MIB) as u64),
            &PutOptions::default(),
        )
        .await
        .unwrap();

    let mut expected = Md5::new();
    for i in 0..CHUNKS {
        expected.update(pattern_chunk(i));
    }
    assert_eq!(meta.size, (CHUNKS * MIB) as u64);
    assert_eq!(
        meta.etag,
        format!("\"{}\"", hex::encode(expected.finalize()))
    );

    // Read back in bounded chunks, compared against the pattern as they arrive.
    let got = b.get(&key("big.bin"), None).await.unwrap();
    let mut body = got.body;
    let mut offset = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= super::READ_CHUNK_BYTES, "{}", chunk.len());
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let in_pattern = MIB - offset % MIB;
            let (here, later) = rest.split_at(rest.len().min(in_pattern));
            let pattern = pattern_chunk(offset / MIB);
            assert!(
                here == &pattern[..here.len()],
                "content differs near byte {offset}"
            );
            offset += here.len();
            rest = later;
        }
    }
    assert_eq!(offset, CHUNKS * MIB);
}

#[tokio::test]
async fn bodies_in_uneven_chunks_are_stored_whole_and_in_order() {
    let (_dir, b) = backend();
    // Empty, tiny and large chunks in every order: small ones are gathered before they are
    // queued, large ones go as they are, and a gathered remainder ends the body.
    let sizes = [
        0,
        1,
        100,
        70_000,
        3,
        65_536,
        200_000,
        0,
        5,
        64 * 1024 - 1,
        1,
        300_000,
        17,
        2,
    ];
    let data = part_data(sizes.iter().sum(), 9);
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in sizes {
        pieces.push(Bytes::copy_from_slice(&data[at..at + size]));
        at += size;
    }
    let meta = b
        .put(
            &key("uneven"),
            chunks(pieces),
            Some(data.len() as u64),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(meta.etag, quoted_md5(&data));
    assert!(content(&b, "uneven").await == data, "content differs");
    assert!(temp_files(&b).is_empty());
}

fn part_data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn multipart_upload_assembles_parts() {
    let (_dir, b) = backend();
    let k = key("uploads/big.parquet");
    let id = b
        .create_multipart(&k, Some("application/vnd.apache.parquet".into()))
        .await
        .unwrap();
    assert_eq!(id.len(), 32);

    let parts = [
        part_data(5 * MIB, 1),
        part_data(5 * MIB, 2),
        part_data(1024, 3),
    ];
    // Out of order, and part 1 first uploaded with other content and then replaced.
    let p2 = b
        .upload_part(
            &k,
            &id,
            2,
            body(parts[1].clone()),
            Some(parts[1].len() as u64),
            None,
        )
        .await
        .unwrap();
    b.upload_part(&k, &id, 1, body(&b"not this"[..]), None, None)
        .await
        .unwrap();
    let p1 = b
        .upload_part(&k, &id, 1, body(parts[0].clone()), None, None)
        .await
        .unwrap();
    let p3 = b
        .upload_part(&k, &id, 3, body(parts[2].clone()), None, None)
        .await
        .unwrap();
    assert_eq!(p1.etag, quoted_md5(&parts[0]));
    assert_eq!((p2.part_number, p2.size), (2, 5 * MIB as u64));

    let listed = b.list_parts(&k, &id).await.unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|p| (p.part_number, p.etag.clone(), p.size))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, quoted_md5(&parts[0]), 5 * MIB as u64),
            (2, quoted_md5(&parts[1]), 5 * MIB as u64),
            (3, quoted_md5(&parts[2]), 1024),
        ]
    );

    // ETags as clients send them: quoted or not.
    let list = [
        (1, p1.etag.clone()),
        (2, p2.etag.trim_matches('"').to_owned()),
        (3, p3.etag.clone()),
    ];
    let meta = b
        .complete_multipart(&k, &id, &list, &PutOptions::default())
        .await
        .unwrap();

    let mut md5s = Vec::new();
    for part in &parts {
        md5s.extend_from_slice(&md5_bytes(part));
    }
    assert_eq!(
        meta.etag,
        format!("\"{}-3\"", hex::encode(md5_bytes(&md5s)))
    );
    assert_eq!(meta.size, (10 * MIB + 1024) as u64);
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/vnd.apache.parquet")
    );
    assert_eq!(b.head(&k).await.unwrap(), meta);
    assert!(content(&b, "uploads/big.parquet").await == parts.concat());

    assert!(!b.layout.uploads.join(&id).exists());
    assert!(matches!(
        b.list_parts(&k, &id).await,
        Err(StorageError::NoSuchUpload(_))
    ));
    assert!(temp_files(&b).is_empty());
}

#[tokio::test]
async fn multipart_completion_checks_the_parts() {
    let (_dir, b) = backend();
    let k = key("m");
    let id = b.create_multipart(&k, None).await.unwrap();
    let small = b
        .upload_part(&k, &id, 1, body(part_data(1024, 1)), None, None)
        .await
        .unwrap();
    let last = b
        .upload_part(&k, &id, 2, body(part_data(1024, 2)), None, None)
        .await
        .unwrap();

    let invalid = |result: Result<_, StorageError>| match result {
        Err(StorageError::InvalidPart(message)) => message,
        other => panic!("expected InvalidPart, got {other:?}"),
    };
    let both = [(1, small.etag.clone()), (2, last.etag.clone())];
    let message = invalid(
        b.complete_multipart(&k, &id, &both, &PutOptions::default())
            .await,
    );
    assert!(
        message.contains("part 1 is 1024 bytes") && message.contains("5 MiB"),
        "{message}"
    );

    let wrong = [(1, quoted_md5(b"something else"))];
    let message = invalid(
        b.complete_multipart(&k, &id, &wrong, &PutOptions::default())
            .await,
    );
    assert!(
        message.contains("part 1") && message.contains("ETag"),
        "{message}"
    );

    let missing = [(4, last.etag.clone())];
    let message = invalid(
        b.complete_multipart(&k, &id, &missing, &PutOptions::default())
            .await,
    );
    assert!(message.contains("part 4 was not uploaded"), "{message}");

    let unordered = [(2, last.etag.clone()), (1, small.etag.clone())];
    let message = invalid(
        b.complete_multipart(&k, &id, &unordered, &PutOptions::default())
            .await,
    );
    assert!(message.contains("ascending"), "{message}");
    assert!(
        b.complete_multipart(&k, &id, &[], &PutOptions::default())
            .await
            .is_err()
    );
    assert!(
        b.upload_part(&k, &id, 10_001, body(&b"x"[..]), None, None)
            .await
            .is_err()
    );

    // Nothing was committed and the upload is intact: a single small part is a valid upload.
    assert!(matches!(b.head(&k).await, Err(StorageError::NotFound(_))));
    assert_eq!(b.list_parts(&k, &id).await.unwrap().len(), 2);
    let meta = b
        .complete_multipart(&k, &id, &[(2, last.etag)], &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        meta.etag,
        format!(
            "\"{}-1\"",
            hex::encode(md5_bytes(&md5_bytes(&part_data(1024, 2))))
        )
    );
    assert_eq!(content(&b, "m").await, part_data(1024, 2));
    assert!(temp_files(&b).is_empty());
}

#[tokio::test]
async fn aborted_and_unknown_uploads() {
    let (_dir, b) = backend();
    let k = key("aborted");
    let id = b.create_multipart(&k, None).await.unwrap();
    b.upload_part(&k, &id, 1, body(&b"x"[..]), None, None)
        .await
        .unwrap();

    assert!(
        matches!(
            b.list_parts(&key("other"), &id).await,
            Err(StorageError::NoSuchUpload(_))
        ),
        "the id is for another key"
    );
    b.abort_multipart(&k, &id).await.unwrap();
    assert!(!b.layout.uploads.join(&id).exists());
    assert!(matches!(
        b.abort_multipart(&k, &id).await,
        Err(StorageError::NoSuchUpload(_))
    ));
    assert!(matches!(
        b.upload_part(&k, &id, 2, body(&b"x"[..]), None, None).await,
        Err(StorageError::NoSuchUpload(_))
    ));
    assert!(matches!(
        b.complete_multipart(&k, &id, &[(1, quoted_md5(b"x"))], &PutOptions::default())
            .await,
        Err(StorageError::NoSuchUpload(_))
    ));
    for bogus in [
        "",
        "../../etc",
        "0123456789abcdef0123456789abcdeg",
        &"f".repeat(32),
    ] {
        assert!(
            matches!(
                b.list_parts(&k, bogus).await,
                Err(StorageError::NoSuchUpload(_))
            ),
            "{bogus}"
        );
    }
    assert!(matches!(b.head(&k).await, Err(StorageError::NotFound(_))));
    assert!(temp_files(&b).is_empty());
}

/// The S3 listing of `sorted` for `req`, computed from a flat sorted list: every page, in
/// order, as (object keys, common prefixes, next_start_after).
type Page = (Vec<String>, Vec<String>, Option<String>);

fn expected_pages(sorted: &[String], req: &ListRequest) -> Vec<Page> {
    enum Line {
        Key(String),
        Prefix(String),
    }
    let mut lines: Vec<Line> = Vec::new();
    for k in sorted.iter().filter(|k| k.starts_with(&req.prefix)) {
        let rest = &k[req.prefix.len()..];
        let common = req.delimiter.as_deref().and_then(|d| {
            rest.find(d)
                .map(|at| format!("{}{}", req.prefix, &rest[..at + d.len()]))
        });
        match common {
            Some(p) if matches!(lines.last(), Some(Line::Prefix(last)) if *last == p) => {}
            Some(p) => lines.push(Line::Prefix(p)),
            None => lines.push(Line::Key(k.clone())),
        }
    }
    let name = |l: &Line| match l {
        Line::Key(s) | Line::Prefix(s) => s.clone(),
    };
    let mut pages = Vec::new();
    let mut after = req.start_after.clone();
    loop {
        let rest: Vec<&Line> = lines
            .iter()
            .filter(|l| after.as_ref().is_none_or(|a| name(l) > *a))
            .collect();
        let page = &rest[..rest.len().min(req.max_keys)];
        let next = (rest.len() > page.len()).then(|| name(page.last().unwrap()));
        let keys = page
            .iter()
            .filter_map(|l| {
                if let Line::Key(k) = l {
                    Some(k.clone())
                } else {
                    None
                }
            })
            .collect();
        let prefixes = page
            .iter()
            .filter_map(|l| {
                if let Line::Prefix(p) = l {
                    Some(p.clone())
                } else {
                    None
                }
            })
            .collect();
        pages.push((keys, prefixes, next.clone()));
        match next {
            Some(n) => after = Some(n),
            None => return pages,
        }
    }
}

async fn actual_pages(b: &LocalBackend, req: &ListRequest) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut req = req.clone();
    loop {
        let page = b.list(&req).await.unwrap();
        for object in &page.objects {
            // Every test object's content is its key.
            assert_eq!(
                object.etag,
                quoted_md5(object.key.as_bytes()),
                "{}",
                object.key
            );
            assert_eq!(object.size, object.key.len() as u64);
        }
        let keys = page.objects.iter().map(|o| o.key.clone()).collect();
        pages.push((keys, page.common_prefixes, page.next_start_after.clone()));
        match page.next_start_after {
            Some(next) => req.start_after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 1000, "listing does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_thousands_of_keys() {
    let (_dir, b) = backend();
    let mut keys: Vec<String> = Vec::new();
    keys.extend((0..1200).map(|i| format!("flat/{i:05}.csv")));
    keys.extend((0..1000).map(|i| format!("deep/{}/{}/f{i}", i % 7, i % 3)));
    keys.extend((0..250).map(|i| format!("r{i}")));
    // Names whose order differs from a naive per-folder walk ('-' and '.' sort before '/').
    keys.extend(
        [
            "a-b",
            "a.b",
            "a/b/c",
            "a/b-c/d",
            "a/b.c",
            "a0",
            "ü/x",
            "a b/c",
            "de",
            "deep-end",
            "deep.txt",
            "flat-file",
        ]
        .map(String::from),
    );
    keys.extend((0..38).map(|i| format!("by-api/{i:02}")));
    assert_eq!(keys.len(), 2500);

    // Most are dropped in by hand (their sidecars are built while listing); some go through put.
    let b = Arc::new(b);
    let mut puts = Vec::new();
    for k in &keys {
        if k.starts_with("by-api/") || (k.starts_with("r1") && k.len() <= 3) {
            let (b, k) = (b.clone(), k.clone());
            puts.push(tokio::spawn(async move { put(&b, &k, k.as_bytes()).await }));
        } else {
            let path = root(&b).join(k);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, k.as_bytes()).unwrap();
        }
    }
    for p in puts {
        p.await.unwrap();
    }
    // Not keys: internal state, an empty folder, a name with a control character.
    std::fs::create_dir_all(root(&b).join("empty/folder")).unwrap();
    std::fs::write(root(&b).join("bad\u{1}name"), b"x").unwrap();
    keys.sort();

    let req =
        |prefix: &str, delimiter: Option<&str>, start_after: Option<&str>, max_keys| ListRequest {
            prefix: prefix.into(),
            delimiter: delimiter.map(String::from),
            start_after: start_after.map(String::from),
            max_keys,
        };
    let cases = [
        req("", None, None, 1000),
        req("", Some("/"), None, 1000),
        req("", Some("/"), None, 3),
        req("deep/", Some("/"), None, 2),
        req("deep/", None, None, 1000),
        req("de", Some("/"), None, 1000),
        req("flat/", None, Some("flat/00500.csv"), 1000),
        req("flat/01", Some("/"), Some("flat/0150"), 7),
        req("", Some("/"), Some("a-b"), 1000),
        req("", Some("/"), Some("deep/"), 1000),
        req("a", Some("b"), None, 1000),
        req("", Some("-"), None, 1000),
        req("", None, Some("zzz"), 1000),
        req("nothing/", None, None, 1000),
    ];
    for case in &cases {
        let expected = expected_pages(&keys, case);
        let actual = actual_pages(&b, case).await;
        assert_eq!(actual.len(), expected.len(), "{case:?}");
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            assert_eq!(a, e, "page {i} of {case:?}");
        }
    }

    // The whole listing, paged by 1000, is every key in byte order.
    let all: Vec<String> = actual_pages(&b, &cases[0])
        .await
        .into_iter()
        .flat_map(|p| p.0)
        .collect();
    assert_eq!(all, keys);
    assert_eq!(expected_pages(&keys, &cases[0]).len(), 3);
    let empty = b.list(&req("", None, None, 0)).await.unwrap();
    assert_eq!(empty, crate::storage::ListPage::default());
}

#[tokio::test]
async fn listing_an_unused_root_is_empty() {
    let (_dir, b) = backend();
    let page = b
        .list(&ListRequest {
            max_keys: 1000,
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(page, crate::storage::ListPage::default());
}

/// A runtime whose blocking pool has two threads: any task that waited there for a client
/// would leave no thread for anyone else.
fn two_blocking_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Once `stalled` transfers have settled, a write and a read of another object still complete.
async fn still_served(b: &LocalBackend, stalled: &str) {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        put(b, "other", b"still served").await;
        content(b, "other").await
    })
    .await
    .unwrap_or_else(|_| panic!("a write and a read must not wait for {stalled}"));
    assert_eq!(other, b"still served");
}

#[test]
fn stalled_uploads_hold_no_blocking_thread() {
    two_blocking_threads().block_on(async {
        let (_dir, b) = backend();
        let b = Arc::new(b);
        // Four uploads whose clients send a chunk and then nothing more.
        let mut stalled = Vec::new();
        for i in 0..4 {
            let b = Arc::clone(&b);
            let body = stream::iter([Ok(Bytes::from(vec![1u8; MIB]))]).chain(stream::pending());
            stalled.push(tokio::spawn(async move {
                let key = key(&format!("stalled/{i}"));
                b.put(&key, Box::pin(body), None, &PutOptions::default())
                    .await
            }));
        }
        still_served(&b, "stalled uploads").await;
        assert!(stalled.iter().all(|upload| !upload.is_finished()));
        stalled.iter().for_each(|upload| upload.abort());
    });
}

#[test]
fn stalled_downloads_hold_no_blocking_thread() {
    two_blocking_threads().block_on(async {
        let (_dir, b) = backend();
        put(&b, "big", &part_data(8 * super::READ_CHUNK_BYTES, 1)).await;
        // Four downloads whose clients read one chunk and then stop reading.
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut body = b.get(&key("big"), None).await.unwrap().body;
            body.next().await.unwrap().unwrap();
            stalled.push(body);
        }
        still_served(&b, "stalled downloads").await;
        drop(stalled);
    });
}
