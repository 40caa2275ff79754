//! The catalog's rules, without the actor.

use super::book::{Book, validate_name};
use super::*;

fn snapshot(table: &str, uri: &str) -> ChangeRequest {
    ChangeRequest {
        change: Change::Snapshot {
            table: table.into(),
            uri: uri.into(),
            format: None,
            description: None,
            size: None,
        },
        message: String::new(),
        author: Author::User,
    }
}

fn change(change: Change) -> ChangeRequest {
    ChangeRequest {
        change,
        message: "because".into(),
        author: Author::User,
    }
}

fn apply(book: &mut Book, req: ChangeRequest) -> Result<Committed, CatalogError> {
    book.apply(req, 1_000).map(|(c, _)| c)
}

#[test]
fn a_first_snapshot_creates_the_table_and_later_ones_replace_its_data() {
    let mut book = Book::default();
    let first = apply(&mut book, snapshot("orders", "store://local/o/1.parquet")).unwrap();
    assert_eq!(first.commit.seq, 1);
    assert_eq!(first.commit.kind, CommitKind::Snapshot { created: true });
    assert_eq!(
        first.table.snapshot.as_ref().unwrap().format,
        Format::Parquet
    );
    let second = apply(&mut book, snapshot("ORDERS", "store://local/o/2.csv")).unwrap();
    assert_eq!(second.commit.seq, 2);
    assert_eq!(second.commit.kind, CommitKind::Snapshot { created: false });
    assert_eq!(
        second.table.table.id, first.table.table.id,
        "names are case-insensitive"
    );
    assert_eq!(
        second.table.table.name, "orders",
        "the table keeps its name"
    );
    let view = book.catalog(false);
    assert_eq!(view.seq, 2);
    assert_eq!(view.tables.len(), 1);
    assert_eq!(
        view.tables[0].snapshot.as_ref().unwrap().uri,
        "store://local/o/2.csv"
    );
}

#[test]
fn refused_changes_change_nothing() {
    let mut book = Book::default();
    apply(&mut book, snapshot("a", "store://local/a.csv")).unwrap();
    for bad in [
        snapshot("1abc", "store://local/x.csv"),
        snapshot("select", "store://local/x.csv"),
        snapshot("has space", "store://local/x.csv"),
        snapshot("larder_x", "store://local/x.csv"),
        snapshot("b", "ftp://x/y.csv"),
        snapshot("b", "store://local/no-extension"),
        snapshot("b", ""),
        change(Change::Delete {
            table: "nope".into(),
        }),
        change(Change::Restore { table: "a".into() }),
        change(Change::Rename {
            table: "a".into(),
            to: "bad-name".into(),
        }),
        change(Change::Edit {
            table: "a".into(),
            uri: None,
            format: None,
        }),
    ] {
        let before = book.catalog(true);
        assert!(
            apply(&mut book, bad.clone()).is_err(),
            "{bad:?} was accepted"
        );
        assert_eq!(book.catalog(true), before, "{bad:?} changed the catalog");
    }
}

#[test]
fn names_are_sql_identifiers() {
    for ok in ["orders", "_t", "T2", "a_b_c", &"x".repeat(63)] {
        validate_name(ok).unwrap();
    }
    for bad in [
        "",
        "2x",
        "a-b",
        "a.b",
        "é",
        "from",
        "Table",
        &"x".repeat(64),
        "orders@3",
    ] {
        assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn renames_refuse_names_in_use_even_by_deleted_tables() {
    let mut book = Book::default();
    apply(&mut book, snapshot("a", "store://local/a.csv")).unwrap();
    apply(&mut book, snapshot("b", "store://local/b.csv")).unwrap();
    apply(&mut book, change(Change::Delete { table: "b".into() })).unwrap();
    let err = apply(
        &mut book,
        change(Change::Rename {
            table: "a".into(),
            to: "B".into(),
        }),
    )
    .unwrap_err();
    assert_eq!(err, CatalogError::NameTaken("B".into()));
    let renamed = apply(
        &mut book,
        change(Change::Rename {
            table: "a".into(),
            to: "A".into(),
        }),
    )
    .unwrap();
    assert_eq!(
        renamed.table.table.name, "A",
        "a change of case is a rename"
    );
    assert_eq!(renamed.commit.kind, CommitKind::Rename { from: "a".into() });
    assert!(book.table("a").is_some());
}

#[test]
fn deleted_tables_are_hidden_and_restore_with_their_history() {
    let mut book = Book::default();
    apply(&mut book, snapshot("t", "store://local/t1.csv")).unwrap();
    apply(&mut book, change(Change::Delete { table: "t".into() })).unwrap();
    assert!(book.catalog(false).tables.is_empty());
    assert_eq!(book.catalog(true).tables.len(), 1);
    assert!(matches!(
        apply(
            &mut book,
            change(Change::Describe {
                table: "t".into(),
                description: "x".into()
            })
        ),
        Err(CatalogError::Deleted(_))
    ));
    let restored = apply(&mut book, change(Change::Restore { table: "t".into() })).unwrap();
    assert_eq!(restored.table.snapshot.unwrap().uri, "store://local/t1.csv");
    let kinds: Vec<_> = book
        .history("t", None, 10)
        .unwrap()
        .into_iter()
        .map(|c| c.kind.label())
        .collect();
    assert_eq!(kinds, ["restored", "deleted", "created"]);
    // A new snapshot on a deleted table restores it too.
    apply(&mut book, change(Change::Delete { table: "t".into() })).unwrap();
    apply(&mut book, snapshot("t", "store://local/t2.csv")).unwrap();
    assert_eq!(book.catalog(false).tables.len(), 1);
}

#[test]
fn time_travel_reads_what_each_commit_saw_even_after_an_edit() {
    let mut book = Book::default();
    apply(&mut book, snapshot("t", "store://local/t1.csv")).unwrap(); // 1
    apply(&mut book, snapshot("other", "store://local/o.csv")).unwrap(); // 2
    apply(&mut book, snapshot("t", "store://local/t2.parquet")).unwrap(); // 3
    apply(
        &mut book,
        change(Change::Edit {
            table: "t".into(),
            uri: Some("store://local/t2-fixed.parquet".into()),
            format: None,
        }),
    )
    .unwrap(); // 4
    let at = |seq| book.as_of("t", seq).map(|c| c.snapshot.unwrap().uri);
    assert_eq!(at(1).unwrap(), "store://local/t1.csv");
    assert_eq!(at(2).unwrap(), "store://local/t1.csv");
    assert_eq!(at(3).unwrap(), "store://local/t2.parquet");
    assert_eq!(at(4).unwrap(), "store://local/t2-fixed.parquet");
    assert!(matches!(
        book.as_of("other", 1),
        Err(CatalogError::NotAtCommit(_))
    ));
    assert!(matches!(
        book.as_of("t", 5),
        Err(CatalogError::NotAtCommit(_))
    ));
    assert!(matches!(
        book.as_of("t", 0),
        Err(CatalogError::NotAtCommit(_))
    ));
}

#[test]
fn edits_change_the_snapshot_in_place_and_forget_its_schema() {
    let mut book = Book::default();
    let c = apply(&mut book, snapshot("t", "store://local/t.csv")).unwrap();
    let snap = c.table.snapshot.unwrap();
    let schema = SnapshotSchema {
        columns: vec![Column {
            name: "a".into(),
            data_type: "BIGINT".into(),
            nullable: true,
        }],
        rows: Some(3),
        size: Some(10),
    };
    assert!(
        book.set_schema(snap.id, "store://local/other.csv", schema.clone())
            .unwrap()
            .is_none(),
        "a schema read from another URI is not kept"
    );
    assert!(
        book.set_schema(snap.id, &snap.uri, schema.clone())
            .unwrap()
            .is_some()
    );
    assert_eq!(book.table("t").unwrap().schema, Some(schema));
    assert_eq!(book.table("t").unwrap().snapshot.unwrap().rows, Some(3));
    let edited = apply(
        &mut book,
        change(Change::Edit {
            table: "t".into(),
            uri: None,
            format: Some(Format::Ndjson),
        }),
    )
    .unwrap();
    let s = edited.table.snapshot.unwrap();
    assert_eq!((s.id, s.format), (snap.id, Format::Ndjson));
    assert_eq!(edited.table.schema, None);
}

#[test]
fn since_pages_through_the_log() {
    let mut book = Book::default();
    for i in 0..5 {
        apply(&mut book, snapshot(&format!("t{i}"), "store://local/t.csv")).unwrap();
    }
    let seqs = |v: Vec<Commit>| v.into_iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(seqs(book.since(0, 2)), [1, 2]);
    assert_eq!(seqs(book.since(2, 10)), [3, 4, 5]);
    assert!(book.since(5, 10).is_empty());
    assert!(book.since(99, 10).is_empty());
}
