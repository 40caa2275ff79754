// The user's catalog inside the tab, and the tab's WebSocket.
//
// This module OWNS: making every catalog table usable in the tab's DuckDB (one request for the
// whole catalog; each table opened by the first query naming it, the rest by a background
// warm-up), choosing each table's data path and reporting it (native: a view over
// read_parquet/read_json/read_csv on s3://backend/key through Larder's same-origin S3 proxy;
// arrow: the server decodes the file and streams Arrow IPC into a DuckDB table; ⚠: why the table
// is unavailable — one broken table never blocks the others), the proxy credentials DuckDB signs
// with (minted, refreshed before they expire), time-travel names ("orders@12" is orders as of
// commit 12, registered on demand), and the one WebSocket per tab (reconnecting with back-off and
// catching up from the last commit seen).
//
// It must NOT: talk to another origin, run SQL outside the island's queue (use withConn/rawQuery),
// or touch the page beyond the status list it is given and the `larder:commit` event it fires on
// <body> (htmx fragments listen with hx-trigger="larder:commit from:body").

const READERS = {
  parquet: (u) => `read_parquet(${u})`,
  ndjson: (u) => `read_json(${u}, format = 'newline_delimited')`,
  json: (u) => `read_json(${u})`,
  csv: (u) => `read_csv(${u})`,
};
// The DuckDB extension each format needs (CSV is built in).
const EXTENSION = { parquet: 'parquet', ndjson: 'json', json: 'json' };
// A time-travel name in SQL: "table@commit", quoted as DuckDB needs it.
const AS_OF = /"([A-Za-z_][A-Za-z0-9_]*)@([0-9]+)"/g;

export const quoteIdent = (name) => `"${String(name).replaceAll('"', '""')}"`;
export const sqlString = (s) => `'${String(s).replaceAll("'", "''")}'`;

async function problem(res) {
  try {
    const body = await res.json();
    return body.detail || body.title || `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

/**
 * The catalog of this tab. `db` gives the island's DuckDB: { start(), rawQuery(sql),
 * withConn(fn) } (withConn runs fn(conn) in the island's query queue), and csrfToken().
 */
export function createCatalog(db) {
  const status = new Map(); // view name -> { table, path, reason, seq, format }
  const listeners = new Set(); // (event) => void, on every change of `status`
  let loaded = null; // Promise of the first registration
  let credentials = null; // Promise<void>: the current mint
  let credentialsExpiry = null; // when the current credentials expire (ms), once minted
  const extensions = new Map(); // name -> Promise<boolean> (loaded in this DuckDB)
  let available = null; // Promise<Set<string>> of extensions the mirror has
  let loadGeneration = 0; // bumped by every load, so an older warm-up stops
  const registering = new Map(); // view -> Promise of its registration in progress
  let warmed = false; // every table known at the last load has been registered

  const notify = (event) => {
    for (const l of listeners) {
      try {
        l(event);
      } catch (err) {
        console.error('larder: catalog listener failed', err);
      }
    }
  };

  /**
   * The proxy credentials DuckDB signs with: one mint shared by every caller (decided
   * synchronously, so parallel registrations never mint twice), renewed when it nears expiry.
   * The four settings go in one statement, so no query runs between them.
   */
  function ensureCredentials() {
    const stale = credentialsExpiry !== null && credentialsExpiry - Date.now() < 5 * 60 * 1000;
    if (credentials && !stale) return credentials;
    credentialsExpiry = null;
    const mint = (async () => {
      const res = await fetch('/api/storage/proxy-credentials', {
        method: 'POST',
        headers: { 'X-CSRF-Token': db.csrfToken(), 'Content-Type': 'application/json', Accept: 'application/json' },
        // The catalog only reads: least privilege (writers mint their own).
        body: JSON.stringify({ access: 'read' }),
      });
      if (!res.ok) throw new Error(`cannot get storage credentials: ${await problem(res)}`);
      const c = await res.json();
      await db.rawQuery([
        `SET s3_endpoint=${sqlString(c.browser_endpoint)}`,
        `SET s3_region=${sqlString(c.region)}`,
        `SET s3_access_key_id=${sqlString(c.access_key_id)}`,
        `SET s3_secret_access_key=${sqlString(c.secret_access_key)}`,
      ].join('; '));
      credentialsExpiry = Date.parse(c.expires_at) || Date.now() + 30 * 60 * 1000;
    })();
    credentials = mint;
    mint.catch(() => {
      if (credentials === mint) credentials = null; // the next caller tries again
    });
    return mint;
  }

  function mirror() {
    available ??= fetch('/api/duckdb-extensions', { headers: { Accept: 'application/json' } })
      .then(async (res) => (res.ok ? new Set((await res.json()).available ?? []) : new Set()))
      .catch(() => new Set());
    return available;
  }

  /** Whether DuckDB has the extension a format needs (loading it from Larder's mirror once). */
  function hasExtension(format) {
    const name = EXTENSION[format];
    if (!name) return Promise.resolve(true);
    if (!extensions.has(name)) {
      extensions.set(name, (async () => {
        if (!(await mirror()).has(name)) return false;
        try {
          await db.rawQuery(`INSTALL ${name}`);
          await db.rawQuery(`LOAD ${name}`);
          return true;
        } catch (err) {
          console.warn(`larder: extension ${name} did not load; using the Arrow path`, err);
          return false;
        }
      })());
    }
    return extensions.get(name);
  }

  async function drop(view) {
    await db.rawQuery(`DROP VIEW IF EXISTS ${quoteIdent(view)}`).catch(() => {});
    await db.rawQuery(`DROP TABLE IF EXISTS ${quoteIdent(view)}`).catch(() => {});
  }

  async function registerNative(view, snapshot) {
    await ensureCredentials();
    const url = sqlString(`s3://${snapshot.backend}/${snapshot.key}`);
    await drop(view);
    await db.rawQuery(`CREATE VIEW ${quoteIdent(view)} AS SELECT * FROM ${READERS[snapshot.format](url)}`);
  }

  async function registerArrow(view, table, asOf) {
    const params = new URLSearchParams({ format: 'arrow' });
    if (asOf) params.set('as_of', String(asOf));
    const res = await fetch(`/api/table-data/${encodeURIComponent(table)}?${params}`, {
      headers: { Accept: 'application/vnd.apache.arrow.stream' },
    });
    if (!res.ok) throw new Error(await problem(res));
    const bytes = new Uint8Array(await res.arrayBuffer());
    await drop(view);
    await db.withConn((conn) => conn.insertArrowFromIPCStream(bytes, { name: view, create: true }));
  }

  /** Registers one table (as `view`) and records how; never throws. */
  async function register(view, table, snapshot, { asOf = null, seq = null, columns = [] } = {}) {
    const entry = {
      table, path: 'error', reason: '', seq, format: snapshot?.format ?? '', columns: columns.map((c) => c.name),
      pending: false, snapshot,
    };
    try {
      if (!snapshot) throw new Error('no snapshot yet');
      if (!snapshot.backend) {
        throw new Error(`${snapshot.uri} is on the public web, which this page may not fetch from`);
      }
      if (await hasExtension(snapshot.format)) {
        try {
          await registerNative(view, snapshot);
          entry.path = 'native';
        } catch (err) {
          // A file that is not there fails both ways; say so rather than trying Arrow.
          if (/HTTP 40[34]|No files found|does not exist/i.test(err?.message ?? '')) throw err;
          console.warn(`larder: native read of ${table} failed; trying Arrow`, err);
          await registerArrow(view, table, asOf);
          entry.path = 'arrow';
        }
      } else {
        await registerArrow(view, table, asOf);
        entry.path = 'arrow';
      }
      if (entry.columns.length === 0) {
        // No schema from the server yet: DuckDB knows the registered table's columns.
        const described = await db.rawQuery(`DESCRIBE ${quoteIdent(view)}`);
        entry.columns = [...(described.getChild('column_name')?.toArray() ?? [])].map(String);
      }
    } catch (err) {
      entry.reason = String(err?.message ?? err).split('\n')[0].slice(0, 300);
      await drop(view);
    }
    status.set(view, entry);
    return entry;
  }

  async function fetchCatalog() {
    const res = await fetch('/api/catalog', { headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`cannot load the catalog: ${await problem(res)}`);
    return res.json();
  }

  /**
   * Learns the whole catalog (one request) and makes every table usable by name at once: each
   * gets its path from what is known without I/O (no snapshot or public web data: ⚠; CSV, or a
   * format whose extension the mirror has: native; otherwise Arrow) and is registered in DuckDB
   * by the first query that names it, or by the warm-up that then goes through the remaining
   * tables one at a time in the background (finding files that are gone: ⚠). Binding a view
   * costs a few HTTP round trips per table inside DuckDB, so registering 500 tables eagerly
   * would keep a fresh tab busy for seconds.
   */
  async function loadAll() {
    await db.start();
    const t0 = performance.now();
    const generation = ++loadGeneration;
    const [catalog, exts] = await Promise.all([fetchCatalog(), mirror()]);
    const names = new Set(catalog.tables.map((t) => t.name));
    for (const view of [...status.keys()]) {
      if (!view.includes('@') && !names.has(view)) {
        status.delete(view);
        await drop(view);
      }
    }
    for (const t of catalog.tables) {
      const s = t.snapshot;
      const entry = {
        table: t.name, seq: t.last_commit, format: s?.format ?? '', columns: (t.schema?.columns ?? []).map((c) => c.name),
        path: 'arrow', reason: '', pending: true, snapshot: s,
      };
      if (!s) Object.assign(entry, { path: 'error', reason: 'no snapshot yet', pending: false });
      else if (!s.backend) {
        Object.assign(entry, { path: 'error', reason: `${s.uri} is on the public web, which this page may not fetch from`, pending: false });
      } else if (!EXTENSION[s.format] || exts.has(EXTENSION[s.format])) entry.path = 'native';
      status.set(t.name, entry);
    }
    const ms = performance.now() - t0;
    notify({ type: 'loaded', seq: catalog.seq, ms, tables: catalog.tables.length });
    warmUp(generation);
    return { seq: catalog.seq, ms };
  }

  /** Registers a known table now if it is not yet in DuckDB (once, however many ask). */
  function ensureRegistered(view) {
    const e = status.get(view);
    if (!e?.pending) return Promise.resolve(e);
    if (!registering.has(view)) {
      registering.set(view, register(view, e.table, e.snapshot, { seq: e.seq, columns: e.columns.map((name) => ({ name })) })
        .finally(() => registering.delete(view)));
    }
    return registering.get(view);
  }

  /** Registers the remaining tables one at a time, yielding to queries in between. */
  async function warmUp(generation) {
    let done = 0;
    for (const [view, e] of [...status]) {
      if (generation !== loadGeneration) return; // a newer load took over
      if (!e.pending) continue;
      await ensureRegistered(view);
      if (++done % 25 === 0) notify({ type: 'registered' });
    }
    warmed = true;
    notify({ type: 'registered', complete: true });
  }

  /** Brings one table up to date after a commit. */
  async function applyCommit(commit) {
    if (!loaded) return; // DuckDB not started in this tab: nothing registered to refresh
    await loaded.catch(() => {});
    if (commit.kind === 'rename' && commit.renamed_from) {
      status.delete(commit.renamed_from);
      await drop(commit.renamed_from);
    }
    if (commit.kind === 'delete') {
      status.delete(commit.table);
      await drop(commit.table);
    } else {
      const res = await fetch(`/api/catalog/tables/${encodeURIComponent(commit.table)}`, { headers: { Accept: 'application/json' } });
      if (res.ok) {
        const t = await res.json();
        if (!t.deleted_at) {
          await register(t.name, t.name, t.snapshot, { seq: t.last_commit, columns: t.schema?.columns ?? [] });
        }
      }
    }
    notify({ type: 'commit', commit });
  }

  /**
   * Before `sql` runs: registers the catalog tables it names that are not in DuckDB yet, and
   * its time-travel names ("orders@12"); resolves to the time-travel views made.
   */
  async function prepare(sql) {
    const byName = new Map([...status.keys()].filter((v) => !v.includes('@')).map((v) => [v.toLowerCase(), v]));
    const named = new Set();
    for (const [, quoted, bare] of sql.matchAll(/"((?:[^"]|"")*)"|([A-Za-z_][A-Za-z0-9_]*)/g)) {
      const view = byName.get((quoted ?? bare).replaceAll('""', '"').toLowerCase());
      if (view) named.add(view);
    }
    const newly = [...named].filter((v) => status.get(v)?.pending);
    await Promise.all([...named].map(ensureRegistered));
    const made = [];
    for (const [, table, seq] of sql.matchAll(AS_OF)) {
      const view = `${table}@${seq}`;
      if (status.get(view)?.path === 'native' || status.get(view)?.path === 'arrow') continue;
      const res = await fetch(`/api/catalog/tables/${encodeURIComponent(table)}/snapshot?as_of=${seq}`, { headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error(`${view}: ${await problem(res)}`);
      const entry = await register(view, table, await res.json(), { asOf: Number(seq), seq: Number(seq) });
      if (entry.path === 'error') throw new Error(`${view}: ${entry.reason}`);
      made.push(view);
    }
    if (made.length > 0 || newly.length > 0) notify({ type: 'prepared', views: made });
    return made;
  }

  return {
    status,
    /** Registers every table once (later calls wait for the first). */
    load() {
      loaded ??= loadAll();
      return loaded;
    },
    /** Re-registers everything (after a reconnect that may have missed commits). */
    reload() {
      loaded = loadAll();
      return loaded;
    },
    applyCommit,
    prepare,
    /** Whether every table known at the last load is registered in DuckDB. */
    get warmed() {
      return warmed;
    },
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/**
 * The tab's WebSocket: calls onCommit(commit) for every commit, in order, once each, and
 * onReconnect() after a reconnect. Reconnects with exponential back-off (1 s to 30 s, jittered)
 * and asks for the commits it missed.
 */
export function connectCommits({ onCommit, onHello }) {
  let seq = null; // last commit seen
  let delay = 1000;
  let socket = null;
  let stopped = false;

  function open() {
    if (stopped) return;
    const url = new URL('/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (seq !== null) url.searchParams.set('since', String(seq));
    socket = new WebSocket(url);
    socket.addEventListener('message', (e) => {
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      if (frame.type === 'hello') {
        delay = 1000;
        if (seq === null) seq = frame.seq;
        onHello?.(frame);
      } else if (frame.type === 'commit' && (seq === null || frame.commit.seq > seq)) {
        seq = frame.commit.seq;
        onCommit(frame.commit);
      }
    });
    socket.addEventListener('close', () => {
      socket = null;
      if (stopped) return;
      const wait = delay * (0.75 + Math.random() / 2);
      delay = Math.min(delay * 2, 30_000);
      setTimeout(open, wait);
    });
  }
  open();
  return {
    get seq() {
      return seq;
    },
    get connected() {
      return socket?.readyState === WebSocket.OPEN;
    },
    close() {
      stopped = true;
      socket?.close();
    },
  };
}
