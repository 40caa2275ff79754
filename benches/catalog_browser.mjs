#!/usr/bin/env node
// The measuring half of `benches/catalog-browser.sh`: signs in to a running Larder with headless
// Chromium, creates the files and commits them through the JSON API, times the catalog in the
// browser and the WebSocket notifications, and prints one table.
//
// Run it through `benches/catalog-browser.sh`, which builds and starts Larder on 127.0.0.1,
// installs what is missing, passes the addresses here and removes everything afterwards.
//
// Every Larder number is set against a baseline measured in the same run on the same machine
// (the machines are shared and noisy: ratios mean more than absolute times):
//
// 1. Catalog init: N small tables (half CSV, half Parquet, written by PyPI duckdb) committed
//    through `POST /api/catalog/commits`; a fresh /query tab registers them all
//    (`window.larder.catalog.load()`: one `GET /api/catalog`, then every table, in the island's
//    query queue). Offline, the mirror has no parquet extension, so Parquet tables take the
//    Arrow path (`/api/table-data` → `insertArrowFromIPCStream`) and CSV ones the native path
//    (a view over `read_csv('s3://…')` through the same-origin S3 proxy). Baseline: native
//    DuckDB doing the same work on the same local files (a view per CSV, a table per Parquet).
//    Also shown: the one request alone, and N no-I/O `CREATE VIEW`s in the same tab (the floor
//    of DuckDB-WASM's statement round trips).
// 2. Arrow path: one large Parquet table registered by a fresh tab (the catalog of a user who
//    has only it) vs native DuckDB `CREATE TABLE AS SELECT * FROM read_parquet(...)` of the
//    same file (all threads, and one thread: DuckDB-WASM has one); the table's bytes over
//    `GET /api/table-data?format=arrow` alone are shown too.
// 3. Notifications: S sockets on `/ws` (the `ws` package, with the session cookie) for one
//    user; C commits through the API, one at a time; per socket and commit, the time from
//    sending the commit to the frame's arrival. Baselines: the commit's own HTTP round trip,
//    and the same with one socket.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';

import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const execFileP = promisify(execFile);
const log = (m) => process.stderr.write(`[bench ${new Date().toTimeString().slice(0, 8)}] ${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { values: a } = parseArgs({
  options: {
    'login-url-file': { type: 'string' },
    'data-dir': { type: 'string' },
    'larder-bin': { type: 'string' },
    work: { type: 'string' },
    python: { type: 'string', default: 'python3' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    rounds: { type: 'string', default: '3' },
    tables: { type: 'string', default: '500' },
    rows: { type: 'string', default: '1000000' },
    sockets: { type: 'string', default: '200' },
    commits: { type: 'string', default: '50' },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
for (const k of ['login-url-file', 'data-dir', 'larder-bin', 'work']) {
  if (!a[k]) throw new Error(`--${k} is required`);
}
const ROUNDS = a.quick ? 1 : Number(a.rounds);
const TABLES = Number(a.tables);
const ROWS = a.quick ? 200_000 : Number(a.rows);
const SOCKETS = Number(a.sockets);
const COMMITS = a.quick ? 10 : Number(a.commits);
const WORK = a.work;
fs.mkdirSync(WORK, { recursive: true });

// ---------------------------------------------------------------------------------------------
// Native DuckDB (PyPI): writes the files and times the baselines.

const PYTHON = String.raw`
import json, os, sys, time
import duckdb

def small(root, n):
    """n/2 CSV and n/2 Parquet files of 20 rows each, every one different."""
    con = duckdb.connect()
    for i in range(n):
        ext = "csv" if i % 2 == 0 else "parquet"
        opts = "(HEADER)" if ext == "csv" else "(FORMAT PARQUET)"
        con.execute(f"""COPY (SELECT {i} * 100 + r AS id, 'item ' || r AS name,
                                     CAST(r * 1.25 + {i} AS DECIMAL(10,2)) AS amount,
                                     DATE '2026-01-01' + CAST(r AS INTEGER) AS day
                              FROM range(20) t(r)) TO '{root}/t{i:03d}.{ext}' {opts}""")

def views(root, n):
    """What the island does, natively on the local files: a view per CSV, a table per Parquet."""
    con = duckdb.connect()
    t = time.perf_counter()
    for i in range(n):
        if i % 2 == 0:
            con.execute(f"CREATE VIEW t{i:03d} AS SELECT * FROM read_csv('{root}/t{i:03d}.csv')")
        else:
            con.execute(f"CREATE TABLE t{i:03d} AS SELECT * FROM read_parquet('{root}/t{i:03d}.parquet')")
    return (time.perf_counter() - t) * 1000

def big(path, rows):
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT i AS id,
                                 TIMESTAMP '2026-01-01 00:00:00' + INTERVAL (i) SECOND AS ts,
                                 ['red', 'green', 'blue', 'amber'][1 + i % 4] AS color,
                                 CAST((i * 7919) % 100000 AS DOUBLE) / 100 AS amount,
                                 CAST(i % 1000 AS INTEGER) AS qty
                          FROM range({rows}) t(i)) TO '{path}' (FORMAT PARQUET)""")

def load(path, threads):
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    t = time.perf_counter()
    con.execute(f"CREATE TABLE big AS SELECT * FROM read_parquet('{path}')")
    ms = (time.perf_counter() - t) * 1000
    assert con.execute("SELECT count(*) FROM big").fetchone()[0] > 0
    return ms

cmd = sys.argv[1]
if cmd == "small": small(sys.argv[2], int(sys.argv[3])); print("{}")
elif cmd == "views": print(json.dumps({"ms": views(sys.argv[2], int(sys.argv[3]))}))
elif cmd == "big": big(sys.argv[2], int(sys.argv[3])); print("{}")
elif cmd == "load": print(json.dumps({"ms": load(sys.argv[2], int(sys.argv[3]))}))
elif cmd == "version": print(json.dumps({"version": duckdb.__version__}))
`;
const PY_FILE = path.join(WORK, 'native.py');
fs.writeFileSync(PY_FILE, PYTHON);

async function py(...args) {
  const { stdout } = await execFileP(a.python, [PY_FILE, ...args.map(String)], {
    timeout: 300_000,
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout);
}

// ---------------------------------------------------------------------------------------------
// Larder: sign-in, the API, the query page.

const loginUrl = fs.readFileSync(a['login-url-file'], 'utf8').trim();
const ORIGIN = new URL(loginUrl).origin;

/** A fresh one-time login URL for `user` (`larder login-link`, over the control socket). */
async function loginLink(user) {
  const env = { PATH: process.env.PATH, HOME: WORK, LARDER_DATA_DIR: a['data-dir'] };
  const { stdout } = await execFileP(a['larder-bin'], ['login-link', '--user', user], { env, timeout: 10_000 });
  return stdout.trim();
}

async function waitReady(page) {
  await page.waitForFunction(() => {
    const s = document.querySelector('#duckdb-status');
    return window.larder && s && ['ready', 'failed'].includes(s.dataset.state);
  }, null, { timeout: 90_000 });
  const [state, text] = await page.evaluate(() => {
    const s = document.querySelector('#duckdb-status');
    return [s.dataset.state, s.textContent];
  });
  if (state !== 'ready') throw new Error(`DuckDB did not start: ${text}`);
}

/** A signed-in browser context, its /query page, and an API client with its cookie. */
async function signIn(browser, link) {
  const context = await browser.newContext();
  // Failed requests (pages and workers), to explain a table that was not registered.
  context.failed = [];
  context.on('response', (r) => {
    if (r.status() >= 400) context.failed.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  context.on('requestfailed', (r) => context.failed.push(`failed ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  // Every request's method and path, to count what a registration costs.
  context.requests = [];
  context.on('request', (r) => context.requests.push(`${r.method()} ${new URL(r.url()).pathname}`));
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await page.goto(link);
  await Promise.all([page.waitForURL(`${ORIGIN}/query`), page.click('#confirm-login')]);
  await waitReady(page);
  const cookie = (await context.cookies(ORIGIN)).map((c) => `${c.name}=${c.value}`).join('; ');
  const csrf = await page.evaluate(() => window.larder.csrfToken());
  const client = new Client(cookie, csrf);
  client.id = (await client.get('/api/me')).id;
  return { context, page, client };
}

class Client {
  constructor(cookie, csrf) {
    this.cookie = cookie;
    this.csrf = csrf;
  }

  async get(url) {
    const res = await fetch(`${ORIGIN}${url}`, { headers: { Cookie: this.cookie, Accept: 'application/json' } });
    if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
    return res.json();
  }

  async commit(table, uri, message = '') {
    const res = await fetch(`${ORIGIN}/api/catalog/commits`, {
      method: 'POST',
      headers: {
        Cookie: this.cookie,
        'X-CSRF-Token': this.csrf,
        'Content-Type': 'application/json',
        Accept: 'application/json',
      },
      body: JSON.stringify({ table, uri, message }),
    });
    const text = await res.text();
    if (res.status !== 201) throw new Error(`commit ${table} → ${uri}: ${res.status} ${text}`);
    return JSON.parse(text);
  }
}

function localDir(userId, sub) {
  const dir = path.join(a['data-dir'], 'storage', 'users', userId, 'local', sub);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Opens /query afresh (a new DuckDB) and waits for the island's own catalog registration. */
async function freshLoad(page) {
  page.context().failed.length = 0;
  page.context().requests.length = 0;
  await page.goto(`${ORIGIN}/query`);
  await waitReady(page);
  const got = await page.evaluate(async () => {
    const t0 = performance.now();
    const loaded = await window.larder.catalog.load();
    // Every table is usable by name now; DuckDB opens them in the background (the warm-up).
    while (!window.larder.catalog.warmed) await new Promise((r) => setTimeout(r, 10));
    return { ...loaded, warmMs: performance.now() - t0, status: window.larder.catalog.status() };
  });
  // The status line the person sees ("… · N tables in X ms").
  await page.waitForFunction(() => /tables in/.test(document.querySelector('#duckdb-status').textContent),
    null, { timeout: 10_000 }).catch(() => {});
  got.line = await page.evaluate(() => document.querySelector('#duckdb-status').textContent);
  const entries = Object.entries(got.status);
  got.paths = { native: 0, arrow: 0, error: 0 };
  for (const [, e] of entries) got.paths[e.path] = (got.paths[e.path] ?? 0) + 1;
  // A table that is not registered (⚠) is reported, not hidden: the time then covers less work.
  got.broken = entries.filter(([, e]) => e.path === 'error').map(([name, e]) => `${name}: ${e.reason}`);
  got.failedRequests = [...page.context().failed];
  const reqs = page.context().requests;
  got.requests = {
    s3: reqs.filter((r) => / \/s3\//.test(r)).length,
    s3Head: reqs.filter((r) => /^HEAD \/s3\//.test(r)).length,
    tableData: reqs.filter((r) => / \/api\/table-data\//.test(r)).length,
    credentials: reqs.filter((r) => r === 'POST /api/storage/proxy-credentials').length,
    all: reqs.length,
  };
  // Failures of this page's registration (not the previous page's requests, aborted by the
  // navigation).
  got.failedRequests = got.failedRequests.filter((f) => !/ERR_ABORTED/.test(f));
  if (got.broken.length) {
    log(`  ⚠ ${got.broken.length} tables not registered, e.g. ${got.broken.slice(0, 3).join('; ')}`);
    log(`  ${got.failedRequests.length} failed requests${got.failedRequests.length ? ', e.g.' : ''}\n    ` +
      got.failedRequests.slice(0, 10).join('\n    '));
  }
  delete got.status;
  return got;
}

/** Times `fn` inside the page `n` times; the median of the ms it reports. */
async function inPage(page, n, fn, arg) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await page.evaluate(fn, arg));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Numbers and the table.

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** Nearest-rank percentile. */
const pct = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
};
const fmt = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

const rows = [];
const results = {};

/** A row of times: ratio = baseline / Larder (above 1: Larder faster), with its per-round range. */
function timeRow(c, larder, baseName, base, { target = null, note = '', unit = 'ms', d = 0 } = {}) {
  const L = median(larder);
  const B = base ? median(base) : null;
  let ratio = '';
  if (B) {
    ratio = (B / L).toFixed(2);
    if (larder.length > 1 && base.length === larder.length) {
      const per = larder.map((l, i) => base[i] / l);
      ratio += `  (${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)})`;
    }
  }
  let mark = '';
  if (target !== null) mark = `< ${fmt(target)} ${unit} ${L < target ? 'ok' : 'MISSED'}`;
  rows.push([c, `${fmt(L, d)} ${unit}`, B === null ? baseName : `${fmt(B, d)} ${unit} (${baseName})`, ratio, mark]);
  if (note) rows.push([`  ${note}`, '', '', '', '']);
}

function table() {
  const head = ['case', 'Larder', 'baseline', 'ratio (rounds: min-max)', 'target'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// 1. Catalog init.

async function catalogInit(browser, alice) {
  const dir = localDir(alice.client.id, 'bench');
  log(`writing ${TABLES} small files (CSV and Parquet, PyPI duckdb)`);
  await py('small', dir, TABLES);
  log(`committing ${TABLES} tables through POST /api/catalog/commits (8 at a time)`);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < TABLES) {
      const i = next++;
      const ext = i % 2 === 0 ? 'csv' : 'parquet';
      await alice.client.commit(`t${String(i).padStart(3, '0')}`, `store://local/bench/t${String(i).padStart(3, '0')}.${ext}`, 'bench');
    }
  }));
  const commitMs = performance.now() - t0;
  log(`  ${TABLES} commits over HTTP in ${fmt(commitMs)} ms (${fmt(TABLES / (commitMs / 1000))}/s, 8 in flight)`);

  const loads = [];
  const warms = [];
  const natives = [];
  const floors = [];
  const fetches = [];
  const broken = [];
  let last;
  for (let r = 0; r < ROUNDS; r++) {
    const native = async () => natives.push((await py('views', dir, TABLES)).ms);
    if (r % 2 === 1) await native();
    last = await freshLoad(alice.page);
    if (last.paths.native + last.paths.arrow + last.paths.error !== TABLES) {
      throw new Error(`expected ${TABLES} tables, the tab has ${JSON.stringify(last.paths)}`);
    }
    if (last.broken.length) broken.push({ round: r + 1, tables: last.broken, requests: last.failedRequests });
    loads.push(last.ms);
    warms.push(last.warmMs);
    // The one request alone (the tab is idle now).
    const f = await inPage(alice.page, 3, async () => {
      const t = performance.now();
      const res = await fetch('/api/catalog', { headers: { Accept: 'application/json' } });
      const body = await res.text();
      JSON.parse(body);
      return [performance.now() - t, body.length];
    });
    fetches.push(median(f.map((x) => x[0])));
    results.catalog_bytes = f[0][1];
    // The floor: DuckDB-WASM defining as many views with no I/O, in one call (one statement
    // each would add a worker round trip, and a re-render of the page's table list, per view).
    floors.push(await alice.page.evaluate(async (n) => {
      const sql = Array.from({ length: n }, (_, i) =>
        `CREATE OR REPLACE VIEW bench_floor_${i} AS SELECT ${i} AS id, 'x' AS name;`).join('\n');
      const t = performance.now();
      await window.larder.query(sql);
      return performance.now() - t;
    }, TABLES));
    if (r % 2 === 0) await native();
    log(`  round ${r + 1}: tab ${fmt(last.ms)} ms (${last.paths.native} native, ${last.paths.arrow} arrow; ` +
      `requests: ${last.requests.s3} to /s3 (${last.requests.s3Head} HEAD), ${last.requests.tableData} to /api/table-data, ` +
      `${last.requests.credentials} credential mints), ` +
      `GET /api/catalog ${fmt(fetches.at(-1))} ms, floor ${fmt(floors.at(-1))} ms, native DuckDB ${fmt(natives.at(-1))} ms`);
  }
  results.catalog_init = { loads, natives, floors, fetches, commitMs, paths: last.paths, line: last.line, broken };
  const q = last.requests;
  timeRow(`${TABLES} tables registered in a fresh tab (usable by name)`, loads, 'native DuckDB, same files, local', natives, {
    target: 1000,
    note: `catalog.load(): one GET /api/catalog; ${last.paths.native} CSV native (views over s3://), ${last.paths.arrow} Parquet over the Arrow path, each opened in DuckDB by the first query naming it; status line: "${last.line.replace(/^.*· (\d+ tables)/, '$1')}"`,
  });
  timeRow(`  all ${TABLES} opened in DuckDB by the background warm-up`, warms, 'native DuckDB, same files, local', natives);
  rows.push([`  requests (last round): ${q.s3} to /s3 (${q.s3Head} HEAD), ${q.tableData} to /api/table-data, ` +
    `${q.credentials} POST /api/storage/proxy-credentials`, '', '', '', '']);
  for (const b of broken) {
    rows.push([`  ⚠ round ${b.round}: ${b.tables.length} tables not registered, e.g. ${b.tables[0]}`, '', '', '', '']);
    rows.push([`    ${b.requests.length} failed requests${b.requests.length ? `, e.g. ${b.requests[0]}` : ''}`, '', '', '', '']);
  }
  timeRow(`  of which GET /api/catalog (${fmt(results.catalog_bytes / 1024)} KiB JSON)`, fetches, '', null);
  timeRow(`  vs ${TABLES} no-I/O CREATE VIEWs in the same tab`, loads, 'DuckDB-WASM, one batch', floors);
}

// ---------------------------------------------------------------------------------------------
// 2. The Arrow path for one large table.

async function arrowPath(browser) {
  const big = await signIn(browser, await loginLink('bench-big'));
  const dir = localDir(big.client.id, 'bench');
  const file = path.join(dir, 'big.parquet');
  log(`writing a ${fmt(ROWS)}-row Parquet file (PyPI duckdb)`);
  await py('big', file, ROWS);
  const size = fs.statSync(file).size;
  await big.client.commit('big', 'store://local/bench/big.parquet', 'bench');

  const loads = [];
  const fetches = [];
  const native = [];
  const native1 = [];
  let bytes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const nat = async () => {
      native.push((await py('load', file, 0)).ms);
      native1.push((await py('load', file, 1)).ms);
    };
    if (r % 2 === 1) await nat();
    const got = await freshLoad(big.page);
    if (got.paths.arrow !== 1) throw new Error(`big was registered as ${JSON.stringify(got.paths)}: ${got.broken.join("; ")}`);
    loads.push(got.ms);
    const n = await big.page.evaluate(async () => (await window.larder.query('SELECT count(*) AS n FROM big')).rows[0][0]);
    if (Number(n) !== ROWS) throw new Error(`the tab's big has ${n} rows, not ${ROWS}`);
    const f = await big.page.evaluate(async () => {
      const t = performance.now();
      const res = await fetch('/api/table-data/big?format=arrow', { headers: { Accept: 'application/vnd.apache.arrow.stream' } });
      const buf = await res.arrayBuffer();
      return [performance.now() - t, buf.byteLength];
    });
    fetches.push(f[0]);
    bytes = f[1];
    if (r % 2 === 0) await nat();
    log(`  round ${r + 1}: tab ${fmt(got.ms)} ms (Arrow fetch alone ${fmt(f[0])} ms, ${fmt(bytes / 2 ** 20, 1)} MiB), ` +
      `native DuckDB ${fmt(native.at(-1))} ms, 1 thread ${fmt(native1.at(-1))} ms`);
  }
  await big.context.close();
  results.arrow = { loads, fetches, native, native1, parquetBytes: size, arrowBytes: bytes, rows: ROWS };
  timeRow(`Arrow path: ${fmt(ROWS)}-row Parquet (${fmt(size / 2 ** 20, 1)} MiB) into a tab`, loads,
    'native DuckDB read_parquet → table', native, {
      note: 'catalog.load() of a user whose only table it is: GET /api/catalog + table-data + insertArrowFromIPCStream',
    });
  timeRow('  same, vs native DuckDB on 1 thread', loads, 'native, SET threads = 1', native1);
  timeRow(`  of which GET /api/table-data?format=arrow (${fmt(bytes / 2 ** 20, 1)} MiB)`, fetches, '', null);
}

// ---------------------------------------------------------------------------------------------
// 3. Commit → tab notifications.

async function notifications(client, sockets, commits) {
  const url = `${ORIGIN.replace(/^http/, 'ws')}/ws`;
  const arrivals = new Map(); // seq -> [ms]
  const open = [];
  await Promise.all(Array.from({ length: sockets }, () => new Promise((resolve, reject) => {
    // No Origin header: a non-browser client (a browser's must equal Larder's origin).
    const ws = new WebSocket(url, { headers: { Cookie: client.cookie }, perMessageDeflate: false });
    open.push(ws);
    ws.on('message', (data) => {
      const t = performance.now();
      const frame = JSON.parse(data);
      if (frame.type === 'hello') resolve();
      else if (frame.type === 'commit') {
        if (!arrivals.has(frame.commit.seq)) arrivals.set(frame.commit.seq, []);
        arrivals.get(frame.commit.seq).push(t);
      }
    });
    ws.on('unexpected-response', (_req, res) => reject(new Error(`/ws answered ${res.statusCode}`)));
    ws.on('error', reject);
  })));
  const sent = [];
  for (let i = 0; i < commits; i++) {
    const t0 = performance.now();
    const c = await client.commit('live', 'store://local/bench/t000.csv', `notify ${i}`);
    const t1 = performance.now();
    sent.push({ seq: c.commit.seq, t0, t1 });
    await sleep(25);
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !sent.every((s) => (arrivals.get(s.seq)?.length ?? 0) >= sockets)) await sleep(20);
  await Promise.all(open.map((ws) => new Promise((resolve) => {
    ws.once('close', resolve);
    ws.close();
    setTimeout(resolve, 2000);
  })));
  const afterSent = [];
  const afterAck = [];
  const lastPerCommit = [];
  let missing = 0;
  for (const s of sent) {
    const got = arrivals.get(s.seq) ?? [];
    missing += Math.max(0, sockets - got.length);
    for (const t of got) {
      afterSent.push(t - s.t0);
      afterAck.push(t - s.t1);
    }
    if (got.length) lastPerCommit.push(Math.max(...got) - s.t0);
  }
  return { afterSent, afterAck, lastPerCommit, rtt: sent.map((s) => s.t1 - s.t0), missing };
}

async function notify(alice) {
  const one = [];
  const many = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [SOCKETS, 1] : [1, SOCKETS];
    for (const n of order) {
      const got = await notifications(alice.client, n, COMMITS);
      if (got.missing) throw new Error(`${got.missing} notifications never arrived (${n} sockets)`);
      (n === 1 ? one : many).push(got);
      log(`  round ${r + 1}, ${n} socket(s): commit sent → frame p50 ${fmt(pct(got.afterSent, 50), 1)} ms, ` +
        `p95 ${fmt(pct(got.afterSent, 95), 1)} ms, max ${fmt(Math.max(...got.afterSent), 1)} ms; ` +
        `HTTP commit p50 ${fmt(pct(got.rtt, 50), 1)} ms`);
    }
  }
  results.notify = { one, many };
  const all = (runs, k) => runs.flatMap((x) => x[k]);
  const p95 = (runs, k) => runs.map((x) => pct(x[k], 95));
  const manySent = all(many, 'afterSent');
  rows.push([`${SOCKETS} sockets: commit sent → frame, p50 / p95 / max`,
    `${fmt(pct(manySent, 50), 1)} / ${fmt(pct(manySent, 95), 1)} / ${fmt(Math.max(...manySent), 1)} ms`, '', '',
    `< 100 ms ${Math.max(...manySent) < 100 ? 'ok' : pct(manySent, 95) < 100 ? 'ok at p95, not max' : 'MISSED'}`]);
  timeRow('  p95 vs the commit\'s own HTTP round trip', p95(many, 'afterSent'), 'HTTP commit p95', p95(many, 'rtt'), {
    d: 1,
    note: `${COMMITS} commits one at a time x ${ROUNDS} round(s); each: check the object, commit durably, fan out to every socket`,
  });
  timeRow('  p95 vs the same with 1 socket', p95(many, 'afterSent'), '1 socket p95', p95(one, 'afterSent'), { d: 1 });
  timeRow(`  last of the ${SOCKETS} sockets, p95 over commits`, many.map((x) => pct(x.lastPerCommit, 95)), '', null, { d: 1 });
  const ack = all(many, 'afterAck');
  rows.push(['  frame after the HTTP answer, p50 / p95', `${fmt(pct(ack, 50), 1)} / ${fmt(pct(ack, 95), 1)} ms`,
    '', '', '']);
  rows.push(['    (negative: the frame came before the HTTP answer)', '', '', '', '']);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = performance.now();
  const browser = await chromium.launch({
    executablePath: a.chromium,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    log('signing in');
    const alice = await signIn(browser, loginUrl);
    const ver = await alice.page.evaluate(() => window.larder.ready.then((r) => r.version));
    results.versions = { wasm: ver, native: (await py('version')).version };
    log(`DuckDB-WASM ${ver}, native duckdb ${results.versions.native}`);
    log(`1. catalog init: ${TABLES} tables`);
    await catalogInit(browser, alice);
    // No tab of alice's may be open while sockets are counted: close it.
    await alice.context.close();
    log(`2. the Arrow path: ${fmt(ROWS)} rows`);
    await arrowPath(browser);
    log(`3. notifications: ${SOCKETS} sockets, ${COMMITS} commits`);
    await notify(alice);
  } finally {
    await browser.close();
  }
  console.log();
  console.log(`Larder catalog browser benchmark (${ROUNDS} round(s); ${fmt((performance.now() - started) / 1000)} s; ` +
    `DuckDB-WASM ${results.versions.wasm} in Chromium, native duckdb ${results.versions.native} from PyPI)`);
  console.log('ratio = baseline ms / Larder ms: 1.00 = parity, below 1 = Larder slower. Medians of the rounds;');
  console.log('(min-max) is the ratio\'s range over single rounds. Times in the tab are measured in the tab.');
  console.log();
  console.log(table());
  if (a.json) fs.writeFileSync(a.json, JSON.stringify({ rows, results }, null, 1));
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exit(1);
});
