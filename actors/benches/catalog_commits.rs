//! Catalog commit throughput: how many commits per second the per-user `Catalog` actor
//! acknowledges (each one durable: fsync'd before its reply), against the naive durable path
//! measured in the same run.
//!
//!     cargo bench -p larder-actors --bench catalog_commits [-- --quick] [-- --secs S --rounds N]
//!
//! Everything runs in this process on a temporary directory on the real disk (`BENCH_TMPDIR`,
//! else /var/tmp): a fresh store and node for every side of every round, so no side
//! inherits another's database. Sides alternate within each round (the machines are shared and
//! noisy: read the ratios, not the absolute numbers). Every commit is a snapshot of one of 100
//! tables, the same change a `POST /api/catalog/commits` makes once the object has been checked.
//!
//! - **Larder**: N callers keep one commit each in flight through `Placement::catalog` (which
//!   resolves the user's tree on every call, as the edge does): the actor applies each change
//!   and moves on; the store's flusher thread fsyncs; replies go out in order once durable
//!   (group commit).
//! - **naive**: what a one-fsync-per-commit actor would do: the same three records (table,
//!   snapshot, commit; same sizes) as one sled `apply_batch` + `flush`, one commit at a time per
//!   user, the same callers queueing for it. With many users, their flushes run in parallel.
//! - For one user, two more rows place the actor between its floor and ceiling: the `Catalog`
//!   called directly (its `ActorRef`, without `Placement`'s resolve), and the store alone
//!   (`Partition::commit` from the same number of callers, no actor: the store's own group
//!   commit, the most any actor on it can do).
//!
//! "Durable" is what the store's flush gives: sled's `flush`, which on Linux ends each log write
//! with `sync_file_range` (the data reaches the device; no journal commit or cache flush).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use larder_actors::catalog::{
    Author, CatalogMsg, Change, ChangeRequest, Commit, CommitKind, Format, Snapshot, SnapshotRef,
    Table,
};
use larder_actors::store::{Changes, Owner, Partition, Store};
use larder_actors::{Node, NodeConfig, Placement, UserId};
use uuid::Uuid;

/// Tables per user: commits rotate over them (each commit is a new snapshot of one).
const TABLES: usize = 100;
/// With many users, fewer each (their creation is untimed set-up, but it takes time).
const TABLES_MANY: usize = 10;
const TARGET_PER_USER: f64 = 10_000.0;

struct Opts {
    secs: f64,
    rounds: usize,
    inflight: usize,
    users: usize,
    per_user: usize,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            secs: 2.0,
            rounds: 3,
            inflight: 64,
            users: 100,
            per_user: 4,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut num = |what: &str| -> f64 {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{what} needs a number"))
            };
            match a.as_str() {
                "--quick" => {
                    o.secs = 0.5;
                    o.rounds = 1;
                }
                "--secs" => o.secs = num("--secs"),
                "--rounds" => o.rounds = num("--rounds") as usize,
                "--inflight" => o.inflight = num("--inflight") as usize,
                "--users" => o.users = num("--users") as usize,
                "--per-user" => o.per_user = num("--per-user") as usize,
                // cargo bench passes --bench (and a filter, if given): nothing to do with them.
                _ => {}
            }
        }
        o
    }
}

// ---------------------------------------------------------------------------------------------
// Counting fsyncs: the store reports its flushes through the `metrics` facade.

#[derive(Default)]
struct Counts {
    flushes: AtomicU64,
    flushed_commits: AtomicU64,
}

struct CountFn(&'static AtomicU64);

impl metrics::CounterFn for CountFn {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

struct FlushRecorder(&'static Counts);

impl metrics::Recorder for FlushRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        match key.name() {
            "larder_store_flushes_total" => {
                metrics::Counter::from_arc(Arc::new(CountFn(&self.0.flushes)))
            }
            "larder_store_flushed_commits_total" => {
                metrics::Counter::from_arc(Arc::new(CountFn(&self.0.flushed_commits)))
            }
            _ => metrics::Counter::noop(),
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

static COUNTS: std::sync::OnceLock<&'static Counts> = std::sync::OnceLock::new();

fn flushes() -> (u64, u64) {
    let c = COUNTS.get().expect("recorder installed");
    (
        c.flushes.load(Ordering::Relaxed),
        c.flushed_commits.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------------
// The load: `callers` tasks, each with one operation in flight until the deadline.

/// What one timed window did.
#[derive(Default, Clone)]
struct Window {
    commits: u64,
    secs: f64,
    /// Per-commit latency (call to acknowledgement), microseconds.
    latencies_us: Vec<u32>,
    /// fsyncs during the window (for the store's own flusher; the naive path fsyncs per commit).
    fsyncs: u64,
}

impl Window {
    fn rate(&self) -> f64 {
        self.commits as f64 / self.secs
    }
}

/// Runs `op(caller, i)` from `callers` concurrent tasks until `secs` have passed; each task
/// starts its next operation when the last one is acknowledged. An operation that fails
/// aborts the benchmark: a number that counts failures as commits would be meaningless.
async fn drive<F, Fut>(callers: usize, secs: f64, op: F) -> Window
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let before = flushes();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if let Err(e) = op(c, i).await {
                        panic!("caller {c}: commit {i} failed: {e}");
                    }
                    lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("a caller panicked"));
    }
    let secs = start.elapsed().as_secs_f64();
    let after = flushes();
    Window {
        commits: latencies_us.len() as u64,
        secs,
        latencies_us,
        fsyncs: after.0 - before.0,
    }
}

// ---------------------------------------------------------------------------------------------
// The sides.

fn snapshot_request(table: usize, n: u64) -> ChangeRequest {
    ChangeRequest {
        change: Change::Snapshot {
            table: format!("t{table:03}"),
            uri: format!("store://local/bench/t{table:03}/part-{n:08}.parquet"),
            format: None,
            description: None,
            size: Some(123_456),
        },
        message: format!("load {n}"),
        author: Author::User,
    }
}

/// The records a snapshot commit stores, built like the catalog builds them (same fields, same
/// JSON, so the same bytes per commit), for the sides that bypass the actor.
struct Records {
    table: Table,
    snapshot: Snapshot,
    commit: Commit,
}

impl Records {
    fn changes(&self) -> Changes {
        let mut c = Changes::new();
        c.put(format!("table/{}", self.table.id), &self.table)
            .unwrap();
        c.put(format!("snap/{}", self.snapshot.id), &self.snapshot)
            .unwrap();
        c.put(format!("commit/{:020}", self.commit.seq), &self.commit)
            .unwrap();
        c
    }

    fn encoded(&self) -> [(String, Vec<u8>); 3] {
        [
            (
                format!("table/{}", self.table.id),
                serde_json::to_vec(&self.table).unwrap(),
            ),
            (
                format!("snap/{}", self.snapshot.id),
                serde_json::to_vec(&self.snapshot).unwrap(),
            ),
            (
                format!("commit/{:020}", self.commit.seq),
                serde_json::to_vec(&self.commit).unwrap(),
            ),
        ]
    }
}

fn records(user_table: Uuid, seq: u64, table: usize) -> Records {
    let now = larder_actors::now_millis();
    let snap = Snapshot {
        id: Uuid::now_v7(),
        table: user_table,
        uri: format!("store://local/bench/t{table:03}/part-{seq:08}.parquet"),
        format: Format::Parquet,
        created_at: now,
        size: Some(123_456),
        rows: None,
    };
    let t = Table {
        id: user_table,
        name: format!("t{table:03}"),
        description: String::new(),
        created_at: now,
        deleted_at: None,
        snapshot: Some(snap.id),
        last_commit: seq,
    };
    let c = Commit {
        seq,
        at: now,
        table: user_table,
        table_name: t.name.clone(),
        kind: CommitKind::Snapshot { created: false },
        snapshot: Some(SnapshotRef {
            id: snap.id,
            uri: snap.uri.clone(),
            format: snap.format,
        }),
        message: format!("load {seq}"),
        author: Author::User,
    };
    Records {
        table: t,
        snapshot: snap,
        commit: c,
    }
}

fn node_config() -> NodeConfig {
    NodeConfig {
        idle_timeout: Duration::from_secs(3600),
        call_timeout: Duration::from_secs(60),
        ..NodeConfig::default()
    }
}

async fn placement_commit(p: &Placement, user: UserId, req: ChangeRequest) -> Result<(), String> {
    match p
        .catalog(user, |r| CatalogMsg::Commit(req.clone(), r))
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts a node on a fresh directory and creates the users' tables (untimed).
async fn start_node(dir: &Path, users: &[UserId], tables: usize) -> Node {
    let node = Node::start(Store::open(dir).unwrap(), node_config())
        .await
        .unwrap();
    let p = node.placement();
    let mut warm = Vec::new();
    for &u in users {
        let p = p.clone();
        warm.push(tokio::spawn(async move {
            for t in 0..tables {
                placement_commit(&p, u, snapshot_request(t, 0))
                    .await
                    .unwrap();
            }
        }));
    }
    for w in warm {
        w.await.unwrap();
    }
    node
}

/// Larder: `callers_per_user` callers per user through `Placement`.
async fn larder(dir: &Path, users: usize, callers_per_user: usize, secs: f64) -> Window {
    let ids: Vec<UserId> = (0..users).map(|_| UserId::new()).collect();
    let tables = if users == 1 { TABLES } else { TABLES_MANY };
    let node = start_node(dir, &ids, tables).await;
    let p = node.placement();
    let ids2 = ids.clone();
    let w = drive(users * callers_per_user, secs, move |c, i| {
        let p = p.clone();
        let user = ids2[c % ids2.len()];
        let req = snapshot_request((c / ids2.len() + i as usize * 7) % tables, i + 1);
        async move { placement_commit(&p, user, req).await }
    })
    .await;
    // Every acknowledged commit is in the catalog, numbered once.
    let p = node.placement();
    let mut seqs = 0;
    for &u in &ids {
        seqs += p
            .catalog(u, |r| CatalogMsg::Catalog(false, r))
            .await
            .unwrap()
            .seq;
    }
    assert_eq!(
        seqs,
        w.commits + (users * tables) as u64,
        "acknowledged commits missing"
    );
    node.shutdown().await.unwrap();
    w
}

/// The Catalog's `ActorRef`, resolved once, called directly.
async fn larder_direct(dir: &Path, callers: usize, secs: f64) -> Window {
    let user = UserId::new();
    let node = start_node(dir, &[user], TABLES).await;
    let catalog = node.placement().user(user).await.unwrap().catalog;
    let w = drive(callers, secs, move |c, i| {
        let catalog = catalog.clone();
        let req = snapshot_request((c + i as usize * 7) % TABLES, i + 1);
        async move {
            match catalog
                .call(
                    |r| CatalogMsg::Commit(req, r),
                    Some(Duration::from_secs(60)),
                )
                .await
            {
                Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
                Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(e.to_string()),
                Ok(_) => Err("timeout or sender error".into()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    node.shutdown().await.unwrap();
    w
}

/// The store alone: `Partition::commit` of the same records from `callers` callers.
async fn store_alone(dir: &Path, callers: usize, secs: f64) -> Window {
    let store = Store::open(dir).unwrap();
    let partition: Partition = store.partition("catalog", &Owner::User(UserId::new()));
    let tables: Arc<Vec<Uuid>> = Arc::new((0..TABLES).map(|_| Uuid::now_v7()).collect());
    let seq = Arc::new(AtomicU64::new(0));
    let w = drive(callers, secs, move |c, i| {
        let partition = partition.clone();
        let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
        let t = (c + i as usize * 7) % TABLES;
        let changes = records(tables[t], n, t).changes();
        async move { partition.commit(changes).await.map_err(|e| e.to_string()) }
    })
    .await;
    store.flush().unwrap();
    w
}

/// Naive: per user, one commit at a time, each its own sled `apply_batch` + `flush`.
async fn naive(dir: &Path, users: usize, callers_per_user: usize, secs: f64) -> Window {
    struct User {
        prefix: Vec<u8>,
        tables: Vec<Uuid>,
        seq: u64,
    }
    let db = sled::Config::new().path(dir).open().unwrap();
    let tree = db.open_tree("catalog").unwrap();
    // One lock per user: the actor handles one commit at a time.
    let state: Arc<Vec<tokio::sync::Mutex<User>>> = Arc::new(
        (0..users)
            .map(|_| {
                let mut prefix = b"u/".to_vec();
                prefix.extend_from_slice(Uuid::now_v7().as_bytes());
                prefix.push(b'/');
                tokio::sync::Mutex::new(User {
                    prefix,
                    tables: (0..TABLES).map(|_| Uuid::now_v7()).collect(),
                    seq: 0,
                })
            })
            .collect(),
    );
    let fsyncs = Arc::new(AtomicU64::new(0));
    let counted = fsyncs.clone();
    let mut w = drive(users * callers_per_user, secs, move |c, i| {
        let (db, tree, state, counted) = (db.clone(), tree.clone(), state.clone(), counted.clone());
        async move {
            let mut user = state[c % users].lock().await;
            user.seq += 1;
            let t = (c / users + i as usize * 7) % TABLES;
            let mut batch = sled::Batch::default();
            for (k, v) in records(user.tables[t], user.seq, t).encoded() {
                let mut key = user.prefix.clone();
                key.extend_from_slice(k.as_bytes());
                batch.insert(key, v);
            }
            tokio::task::spawn_blocking(move || -> Result<(), sled::Error> {
                tree.apply_batch(batch)?;
                db.flush()?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            counted.fetch_add(1, Ordering::Relaxed);
            drop(user);
            Ok(())
        }
    })
    .await;
    w.fsyncs = fsyncs.load(Ordering::Relaxed);
    w
}

/// The CPU ceiling: the same records encoded and applied with sled's `apply_batch` by one
/// caller, never flushed (not durable: a reference, not a way to commit).
async fn apply_only(dir: &Path, secs: f64) -> Window {
    let db = sled::Config::new().path(dir).open().unwrap();
    let tree = db.open_tree("catalog").unwrap();
    let tables: Vec<Uuid> = (0..TABLES).map(|_| Uuid::now_v7()).collect();
    let mut prefix = b"u/".to_vec();
    prefix.extend_from_slice(Uuid::now_v7().as_bytes());
    prefix.push(b'/');
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let mut latencies_us = Vec::new();
        let mut seq = 0u64;
        while Instant::now() < deadline {
            let t0 = Instant::now();
            seq += 1;
            let t = (seq as usize * 7) % TABLES;
            let mut batch = sled::Batch::default();
            for (k, v) in records(tables[t], seq, t).encoded() {
                let mut key = prefix.clone();
                key.extend_from_slice(k.as_bytes());
                batch.insert(key, v);
            }
            tree.apply_batch(batch).unwrap();
            latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        Window {
            commits: seq,
            secs: start.elapsed().as_secs_f64(),
            latencies_us,
            fsyncs: 0,
        }
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Rounds, numbers and the table.

struct Scratch {
    root: PathBuf,
    n: usize,
}

impl Scratch {
    fn next(&mut self) -> tempfile::TempDir {
        self.n += 1;
        tempfile::Builder::new()
            .prefix(&format!("side{}-", self.n))
            .tempdir_in(&self.root)
            .unwrap()
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn pct(xs: &mut [u32], p: f64) -> f64 {
    xs.sort_unstable();
    let i = ((p / 100.0 * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i] as f64 / 1000.0
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

struct Row {
    case: String,
    larder: String,
    baseline: String,
    ratio: String,
    target: String,
}

fn ratio_cell(larder: &[Window], base: &[Window]) -> String {
    let l: Vec<f64> = larder.iter().map(Window::rate).collect();
    let b: Vec<f64> = base.iter().map(Window::rate).collect();
    let per_round: Vec<f64> = l.iter().zip(&b).map(|(x, y)| x / y).collect();
    let lo = per_round.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = per_round.iter().cloned().fold(0.0, f64::max);
    let mut s = format!("{:.2}", median(&l) / median(&b));
    if per_round.len() > 1 {
        s += &format!("  ({lo:.2}-{hi:.2})");
    }
    s
}

fn rate_cell(ws: &[Window]) -> String {
    format!(
        "{} /s",
        thousands(median(&ws.iter().map(Window::rate).collect::<Vec<_>>()))
    )
}

fn per_fsync(ws: &[Window]) -> f64 {
    let commits: u64 = ws.iter().map(|w| w.commits).sum();
    let fsyncs: u64 = ws.iter().map(|w| w.fsyncs).sum();
    commits as f64 / fsyncs.max(1) as f64
}

fn latency_cell(ws: &[Window]) -> String {
    let mut all: Vec<u32> = ws
        .iter()
        .flat_map(|w| w.latencies_us.iter().copied())
        .collect();
    format!(
        "p50 {:.1} / p99 {:.1} ms",
        pct(&mut all, 50.0),
        pct(&mut all, 99.0)
    )
}

fn print_table(rows: &[Row]) {
    let head = [
        "case",
        "Larder",
        "baseline",
        "ratio (rounds: min-max)",
        "target",
    ];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| [r.case.as_str(), &r.larder, &r.baseline, &r.ratio, &r.target])
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap()
        })
        .collect();
    let line = |c: [&str; 5]| {
        let s: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(x, w)| format!("{x:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head);
    let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line([&dashes[0], &dashes[1], &dashes[2], &dashes[3], &dashes[4]]);
    for c in cells {
        line(c);
    }
}

fn environment(root: &Path) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fs = std::process::Command::new("df")
        .args(["-T", &root.to_string_lossy()])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines().nth(1).map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!(
                    "{} on {} (mounted at {})",
                    f.get(1).unwrap_or(&"?"),
                    f[0],
                    f.last().unwrap_or(&"?")
                )
            })
        })
        .unwrap_or_else(|| "?".into());
    println!("Environment");
    println!(
        "  nproc:      {}   ({cpu})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("  filesystem: {fs} for {}", root.display());
    if fs.starts_with("tmpfs") {
        println!("  WARNING: a tmpfs: nothing is really synced; set BENCH_TMPDIR to a disk");
    }
    println!(
        "  load avg:   {} (before the run)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
}

fn main() {
    let o = Opts::parse();
    let counts: &'static Counts = Box::leak(Box::default());
    COUNTS.set(counts).ok();
    metrics::set_global_recorder(FlushRecorder(counts)).expect("no other recorder");
    // /var/tmp is on disk by convention; /tmp may be a tmpfs, where an fsync costs nothing.
    let root = std::env::var_os("BENCH_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/var/tmp")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    let top = tempfile::Builder::new()
        .prefix("larder-catalog-bench.")
        .tempdir_in(&root)
        .unwrap();
    let mut scratch = Scratch {
        root: top.path().to_path_buf(),
        n: 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let log = |s: String| eprintln!("[bench {:>5.1}s] {s}", started.elapsed().as_secs_f64());

    let (secs, n, users, per_user) = (o.secs, o.inflight, o.users, o.per_user);
    let mut one: [Vec<Window>; 5] = Default::default();
    let mut many: [Vec<Window>; 2] = Default::default();
    rt.block_on(async {
        for round in 0..o.rounds {
            // Alternate the order of the sides from round to round.
            let mut order = [0, 1, 2, 3, 4];
            if round % 2 == 1 {
                order.reverse();
            }
            for side in order {
                let dir = scratch.next();
                let w = match side {
                    0 => larder(dir.path(), 1, n, secs).await,
                    1 => naive(dir.path(), 1, n, secs).await,
                    2 => larder_direct(dir.path(), n, secs).await,
                    3 => store_alone(dir.path(), n, secs).await,
                    _ => apply_only(dir.path(), secs).await,
                };
                log(format!(
                    "round {} 1 user {}: {} commits/s, {:.1} per fsync",
                    round + 1,
                    ["larder", "naive", "direct", "store alone", "apply only"][side],
                    thousands(w.rate()),
                    w.commits as f64 / w.fsyncs.max(1) as f64
                ));
                one[side].push(w);
            }
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let dir = scratch.next();
                let w = match side {
                    0 => larder(dir.path(), users, per_user, secs).await,
                    _ => naive(dir.path(), users, per_user, secs).await,
                };
                log(format!(
                    "round {} {users} users {}: {} commits/s, {:.1} per fsync",
                    round + 1,
                    ["larder", "naive"][side],
                    thousands(w.rate()),
                    w.commits as f64 / w.fsyncs.max(1) as f64
                ));
                many[side].push(w);
            }
        }
    });

    let one_rate = median(&one[0].iter().map(Window::rate).collect::<Vec<_>>());
    let many_rate = median(&many[0].iter().map(Window::rate).collect::<Vec<_>>());
    let ok = |x: f64| if x >= TARGET_PER_USER { "ok" } else { "MISSED" };
    let rows = vec![
        Row {
            case: format!("1 user, {n} in flight (Placement)"),
            larder: rate_cell(&one[0]),
            baseline: format!(
                "{} (naive: apply_batch+flush per commit)",
                rate_cell(&one[1])
            ),
            ratio: ratio_cell(&one[0], &one[1]),
            target: format!(">= 10,000/s/user {}", ok(one_rate)),
        },
        Row {
            case: "  same, Catalog's ActorRef called directly".into(),
            larder: rate_cell(&one[0]),
            baseline: format!("{} (direct, no Placement resolve)", rate_cell(&one[2])),
            ratio: ratio_cell(&one[0], &one[2]),
            target: String::new(),
        },
        Row {
            case: "  same, vs the store alone (no actor)".into(),
            larder: rate_cell(&one[0]),
            baseline: format!("{} (Partition::commit x{n})", rate_cell(&one[3])),
            ratio: ratio_cell(&one[0], &one[3]),
            target: String::new(),
        },
        Row {
            case: "  same, vs sled apply_batch alone".into(),
            larder: rate_cell(&one[0]),
            baseline: format!("{} (1 thread, never flushed)", rate_cell(&one[4])),
            ratio: ratio_cell(&one[0], &one[4]),
            target: String::new(),
        },
        Row {
            case: "  commits per fsync (1 user)".into(),
            larder: format!("{:.1}", per_fsync(&one[0])),
            baseline: format!(
                "{:.1} (naive) / {:.1} (store alone)",
                per_fsync(&one[1]),
                per_fsync(&one[3])
            ),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            case: format!("  ack latency (1 user, {n} in flight)"),
            larder: latency_cell(&one[0]),
            baseline: format!("{} (naive)", latency_cell(&one[1])),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            case: format!("{users} users x {per_user} in flight, total"),
            larder: rate_cell(&many[0]),
            baseline: format!(
                "{} (naive, users' flushes in parallel)",
                rate_cell(&many[1])
            ),
            ratio: ratio_cell(&many[0], &many[1]),
            target: String::new(),
        },
        Row {
            case: "  per user".into(),
            larder: format!("{} /s", thousands(many_rate / users as f64)),
            baseline: format!(
                "{} /s",
                thousands(
                    median(&many[1].iter().map(Window::rate).collect::<Vec<_>>()) / users as f64
                )
            ),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            case: format!("  commits per fsync ({users} users)"),
            larder: format!("{:.1}", per_fsync(&many[0])),
            baseline: format!("{:.1} (naive)", per_fsync(&many[1])),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            case: format!("  ack latency ({users} users)"),
            larder: latency_cell(&many[0]),
            baseline: format!("{} (naive)", latency_cell(&many[1])),
            ratio: String::new(),
            target: String::new(),
        },
    ];
    println!();
    environment(top.path());
    println!(
        "Larder catalog commit benchmark ({} alternating round(s) of {secs:.1} s per side; {:.0} s)",
        o.rounds,
        started.elapsed().as_secs_f64()
    );
    println!(
        "Commits/s acknowledged durable (fsync'd before the reply); ratio = Larder / baseline, \
         above 1 = Larder faster;"
    );
    println!("medians of the rounds; (min-max) is the ratio's range over single rounds.");
    println!();
    print_table(&rows);
}
