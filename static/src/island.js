// Larder's DuckDB-WASM island.
//
// This module OWNS: the one DuckDB-WASM instance of the browser tab (created lazily, once, and
// kept alive across htmx-boosted navigations), the sample `pantry` view, the query editor's run
// loop, the results table and its client-side paging, and the per-tab query history
// (sessionStorage). It exposes `window.larder` for tests and later features.
//
// It must NOT: load anything from another origin (every file is a sibling of this module, found
// through import.meta.url), let DuckDB auto-install extensions, render server pages or navigate
// (htmx does that), keep state in the DOM that must survive a swap, or make a state-changing
// request without the X-CSRF-Token header (use csrfToken()).

import * as duckdb from '@duckdb/duckdb-wasm';
import { Type } from 'apache-arrow';

import { connectCommits, createCatalog } from './catalog.js';
import { attachCompletion } from './complete.js';

const WASM_URL = new URL('./duckdb-eh.wasm', import.meta.url).href;
const WORKER_URL = new URL('./duckdb-browser-eh.worker.js', import.meta.url).href;
const EXTENSION_REPOSITORY = new URL('/duckdb-ext', location.origin).href.replaceAll("'", '');
const HISTORY_KEY = 'larder.queryHistory';
const HISTORY_MAX = 50;

/** The CSRF token the server put in <meta name="csrf-token">; send it as X-CSRF-Token. */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? '';
}

// ---------------------------------------------------------------------------------------------
// DuckDB: one instance per tab.

let started = null; // Promise<{ db, conn, version, instantiateMs }>
let queue = Promise.resolve(); // queries run one after another on the single connection
const samples = new Map(); // sample url -> Promise<void>
let firstSample = null; // the sample promise `window.larder.ready` waits for

function start() {
  started ??= (async () => {
    const t0 = performance.now();
    const worker = new Worker(WORKER_URL);
    const db = new duckdb.AsyncDuckDB(new duckdb.ConsoleLogger(duckdb.LogLevel.WARNING), worker);
    try {
      await db.instantiate(WASM_URL);
    } catch (err) {
      worker.terminate();
      started = null; // let a later mount or run try again
      throw err;
    }
    const conn = await db.connect();
    // A missing extension (parquet, json, ...) must be a clean catalog error, never a fetch to a
    // CDN followed by a wasm crash.
    await conn.query('SET autoload_known_extensions=false');
    await conn.query('SET autoinstall_known_extensions=false');
    // Even an explicit INSTALL/LOAD must not leave the origin: Larder mirrors extensions here.
    await conn.query(`SET custom_extension_repository='${EXTENSION_REPOSITORY}'`);
    const version = await db.getVersion();
    return { db, conn, version, instantiateMs: performance.now() - t0 };
  })();
  return started;
}

/** Run SQL on the tab's connection; resolves to an Arrow Table. */
async function rawQuery(sql) {
  const { conn } = await start();
  const result = queue.then(() => conn.query(sql));
  queue = result.catch(() => {});
  try {
    return await result;
  } catch (err) {
    throw new Error(cleanMessage(err?.message ?? String(err)));
  }
}

/** Run fn(conn) on the tab's connection, in the same queue as queries. */
async function withConn(fn) {
  const { conn } = await start();
  const result = queue.then(() => fn(conn));
  queue = result.catch(() => {});
  try {
    return await result;
  } catch (err) {
    throw new Error(cleanMessage(err?.message ?? String(err)));
  }
}

/** DuckDB-WASM repeats the "LINE 1: ..." context paragraph; drop consecutive duplicates. */
function cleanMessage(message) {
  return message.split('\n\n').filter((p, i, all) => p !== all[i - 1]).join('\n\n').trim();
}

function loadSample(url) {
  if (!samples.has(url)) {
    samples.set(url, (async () => {
      const { db } = await start();
      const response = await fetch(url, { credentials: 'same-origin' });
      if (!response.ok) throw new Error(`sample ${url}: HTTP ${response.status}`);
      await db.registerFileBuffer('pantry.csv', new Uint8Array(await response.arrayBuffer()));
      await rawQuery(`CREATE OR REPLACE VIEW pantry AS
        SELECT * FROM read_csv('pantry.csv', header = true, types = {'unit_price': 'DECIMAL(10,2)'})`);
    })());
  }
  return samples.get(url);
}

// ---------------------------------------------------------------------------------------------
// The catalog and the tab's WebSocket.

const catalog = createCatalog({ start, rawQuery, withConn, csrfToken });
// Requests cut off by leaving the page fail; that is not worth an error in the console.
let leaving = false;
addEventListener('pagehide', () => {
  leaving = true;
});
addEventListener('pageshow', () => {
  leaving = false; // back from the back/forward cache
});
const signedIn = csrfToken() !== '';
let firstHello;
const helloSeen = new Promise((resolve) => {
  firstHello = resolve;
});
const commits = signedIn
  ? connectCommits({
    onHello: () => firstHello(),
    onCommit: (commit) => {
      document.body.dispatchEvent(new CustomEvent('larder:commit', { detail: commit }));
      catalog.applyCommit(commit).catch((err) => {
        if (!leaving) console.error('larder: commit not applied', err);
      });
    },
  })
  : null;

/** Registers the catalog, once the socket is listening (so no commit falls in between). */
function loadCatalog() {
  if (!signedIn) return Promise.resolve(null);
  const listening = Promise.race([helloSeen, new Promise((r) => setTimeout(r, 3000))]);
  return listening.then(() => catalog.load());
}

// ---------------------------------------------------------------------------------------------
// Arrow values -> readable text / plain JS.

const pad = (n, w = 2) => String(n).padStart(w, '0');

function decimalToString(words, scale) {
  let v = 0n;
  for (let i = words.length - 1; i >= 0; i--) v = (v << 32n) | BigInt(words[i]);
  const bits = BigInt(words.length * 32);
  if (v >> (bits - 1n)) v -= 1n << bits; // two's complement
  const neg = v < 0n;
  let digits = (neg ? -v : v).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return neg ? `-${digits}` : digits;
}

function dateToString(ms, withTime) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  if (!withTime) return day;
  const frac = d.getUTCMilliseconds() ? `.${pad(d.getUTCMilliseconds(), 3)}` : '';
  return `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${frac}`;
}

function timeToString(value, unit) {
  // unit: 0 s, 1 ms, 2 us, 3 ns
  const perSecond = [1n, 1000n, 1000000n, 1000000000n][unit] ?? 1n;
  const v = BigInt(value);
  const s = v / perSecond;
  const frac = v % perSecond;
  const hms = `${pad(s / 3600n)}:${pad((s / 60n) % 60n)}:${pad(s % 60n)}`;
  return frac ? `${hms}.${String(frac).padStart(String(perSecond).length - 1, '0').replace(/0+$/, '')}` : hms;
}

/** A cell as plain JS: null, number, string, boolean, BigInt (64-bit ints), arrays/objects. */
function plain(value, type) {
  if (value === null || value === undefined) return null;
  switch (type.typeId) {
    case Type.Decimal: return decimalToString(value, type.scale);
    case Type.Date: return dateToString(value, type.unit !== 0 /* DAY */ && value % 86400000 !== 0);
    case Type.Timestamp: return dateToString(value, true) + (type.timezone ? '+00' : '');
    case Type.Time: return timeToString(value, type.unit);
    case Type.List:
    case Type.FixedSizeList: {
      const child = type.children[0].type;
      return Array.from(value, (v) => plain(v, child));
    }
    case Type.Struct: {
      const out = {};
      for (const f of type.children) out[f.name] = plain(value[f.name], f.type);
      return out;
    }
    case Type.Map: {
      const [k, v] = type.children[0].type.children.map((f) => f.type);
      const out = {};
      for (const [key, val] of value) out[String(plain(key, k))] = plain(val, v);
      return out;
    }
  }
  if (value instanceof Uint8Array) return Array.from(value, (b) => '\\x' + b.toString(16).padStart(2, '0')).join('');
  if (ArrayBuffer.isView(value)) return Array.from(value);
  return value;
}

function intervalToString({ months, days, nanos }) {
  const parts = [];
  const plural = (n, unit) => parts.push(`${n} ${unit}${Math.abs(n) === 1 ? '' : 's'}`);
  if (Math.trunc(months / 12)) plural(Math.trunc(months / 12), 'year');
  if (months % 12) plural(months % 12, 'month');
  if (days) plural(days, 'day');
  if (nanos || !parts.length) {
    const neg = nanos < 0n;
    parts.push((neg ? '-' : '') + timeToString((neg ? -nanos : nanos) / 1000n, 2));
  }
  return parts.join(' ');
}

/** apache-arrow 17 misreads MONTH_DAY_NANO intervals (DuckDB's INTERVAL); read the raw words. */
function intervalAt(vector, row) {
  if (!vector.isValid(row)) return null;
  for (const d of vector.data) {
    if (row < d.length) {
      const v = d.values;
      const o = (d.offset + row) * 4;
      return intervalToString({ months: v[o], days: v[o + 1], nanos: (BigInt(v[o + 3]) << 32n) | BigInt(v[o + 2] >>> 0) });
    }
    row -= d.length;
  }
  return null;
}

function cellText(value) {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : String(+value.toPrecision(15));
  if (typeof value === 'object') return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
  return String(value);
}

/** Arrow type -> a DuckDB-ish SQL type name for column headers. */
function typeName(type) {
  switch (type.typeId) {
    case Type.Int: return ({ 8: 'TINYINT', 16: 'SMALLINT', 32: 'INTEGER', 64: 'BIGINT' })[type.bitWidth]
      .replace(/^/, type.isSigned ? '' : 'U');
    case Type.Float: return ['FLOAT', 'FLOAT', 'DOUBLE'][type.precision];
    case Type.Decimal: return `DECIMAL(${type.precision},${type.scale})`;
    case Type.Utf8: case Type.LargeUtf8: return 'VARCHAR';
    case Type.Binary: case Type.LargeBinary: return 'BLOB';
    case Type.Bool: return 'BOOLEAN';
    case Type.Date: return 'DATE';
    case Type.Timestamp: return type.timezone ? 'TIMESTAMPTZ' : 'TIMESTAMP';
    case Type.Time: return 'TIME';
    case Type.Interval: return 'INTERVAL';
    case Type.List: case Type.FixedSizeList: return `${typeName(type.children[0].type)}[]`;
    case Type.Struct: return 'STRUCT';
    case Type.Map: return 'MAP';
    case Type.Null: return 'NULL';
    default: return String(type);
  }
}

const NUMERIC = new Set([Type.Int, Type.Float, Type.Decimal]);

/** Columns of an Arrow table as [{ name, type }]. */
function columnsOf(table) {
  return table.schema.fields.map((f) => ({ name: f.name, type: typeName(f.type) }));
}

/** Rows [from, to) of an Arrow table as arrays of plain values. */
function rowsOf(table, from = 0, to = table.numRows) {
  const fields = table.schema.fields;
  const vectors = fields.map((_, i) => table.getChildAt(i));
  const rows = [];
  for (let r = from; r < Math.min(to, table.numRows); r++) {
    rows.push(vectors.map((v, i) => {
      const type = fields[i].type;
      return type.typeId === Type.Interval && type.unit === 2 ? intervalAt(v, r) : plain(v.get(r), type);
    }));
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Query history (this tab only).

function readHistory() {
  try {
    const list = JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

function remember(entry) {
  const list = [entry, ...readHistory()].slice(0, HISTORY_MAX);
  try {
    sessionStorage.setItem(HISTORY_KEY, JSON.stringify(list));
  } catch {
    /* storage full or disabled: history is best-effort */
  }
  for (const island of mounted) island.renderHistory();
}

// ---------------------------------------------------------------------------------------------
// DOM.

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat().filter((c) => c != null));
  return el;
}

const fmt = (n) => n.toLocaleString('en-US');
const mounted = new Set(); // live island controllers (for history re-rendering)
const seen = new WeakSet(); // elements already mounted: mounting twice is a no-op
let pendingSql = null; // an open-query that arrived before the editor existed

function mount(root) {
  if (seen.has(root)) return;
  seen.add(root);
  const $ = (id) => root.querySelector(`#${id}`);
  const editor = $('sql-editor');
  const runButton = $('run-query');
  const status = $('duckdb-status');
  const errorBox = $('query-error');
  const results = $('query-results');
  const historyList = $('query-history');
  const pageSize = Math.max(1, parseInt(root.dataset.pageSize, 10) || 50);
  let running = false;
  let lastGood = null; // the SQL of the result on screen, re-run when a table it reads changes
  const catalogList = document.getElementById('catalog-status'); // in the sidebar, beside the island
  const cue = $('refresh-cue');
  const sampleUrl = root.dataset.sampleUrl;
  const sample = sampleUrl ? loadSample(sampleUrl) : null;

  const setStatus = (text, state) => {
    if (!status) return;
    status.textContent = text;
    status.dataset.state = state;
  };

  function showError(message) {
    results.replaceChildren();
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function showTable(table, ms) {
    errorBox.hidden = true;
    errorBox.textContent = '';
    const fields = table.schema.fields;
    const columns = columnsOf(table);
    const total = table.numRows;
    let page = 0;
    const pages = Math.max(1, Math.ceil(total / pageSize));
    const summary = h('span', { class: 'results-summary' });
    const prev = h('button', { type: 'button', class: 'secondary small', onclick: () => go(page - 1) }, 'Prev');
    const next = h('button', { type: 'button', class: 'secondary small', onclick: () => go(page + 1) }, 'Next');
    const tbody = h('tbody');
    const head = h('thead', {}, h('tr', {}, columns.map((c, i) =>
      h('th', { class: NUMERIC.has(fields[i].type.typeId) ? 'num' : null, scope: 'col' },
        h('span', { class: 'col-name' }, c.name), h('span', { class: 'col-type' }, c.type)))));
    const pager = pages > 1 ? h('span', { class: 'pager' }, prev, next) : null;

    function go(p) {
      page = Math.min(Math.max(p, 0), pages - 1);
      const from = page * pageSize;
      const rows = rowsOf(table, from, from + pageSize);
      tbody.replaceChildren(...rows.map((row) => h('tr', {}, row.map((v, i) => {
        const num = NUMERIC.has(fields[i].type.typeId);
        return v === null
          ? h('td', { class: num ? 'null num' : 'null' }, 'NULL')
          : h('td', { class: num ? 'num' : null }, cellText(v));
      }))));
      const took = `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
      summary.textContent = total === 0
        ? `0 rows · ${took}`
        : `rows ${fmt(from + 1)}–${fmt(from + rows.length)} of ${fmt(total)} · ${took}`;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    go(0);
    results.replaceChildren(
      h('div', { class: 'results-bar' }, summary, pager),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data' }, head, tbody)),
    );
  }

  async function run() {
    const sql = editor.value.trim();
    if (!sql || running) return;
    running = true;
    runButton.disabled = true;
    root.setAttribute('aria-busy', 'true');
    const t0 = performance.now();
    try {
      await start();
      await sample?.catch(() => {}); // so the first run can already see `pantry`
      await loadCatalog().catch(() => {});
      await catalog.prepare(sql);
      const table = await rawQuery(sql);
      lastGood = sql;
      const ms = performance.now() - t0;
      showTable(table, ms);
      remember({ sql, at: new Date().toISOString(), ok: true, rows: table.numRows, ms: Math.round(ms) });
    } catch (err) {
      const message = err?.message ?? String(err);
      showError(message);
      remember({ sql, at: new Date().toISOString(), ok: false, rows: 0, error: message.slice(0, 300) });
    } finally {
      running = false;
      runButton.disabled = false;
      root.removeAttribute('aria-busy');
    }
  }

  function renderCatalog() {
    if (!catalogList) return;
    const entries = [...catalog.status.entries()].sort(([a], [b]) => a.localeCompare(b));
    if (entries.length === 0) {
      catalogList.replaceChildren(h('li', { class: 'muted small' }, 'No tables yet: commit one on the Catalog page.'));
      return;
    }
    catalogList.replaceChildren(...entries.map(([view, e]) => h('li', { 'data-table': view, 'data-path': e.path, 'data-ready': e.pending ? null : 'true' },
      h('button', { type: 'button', class: 'link table-ref', title: `SELECT * FROM ${view}`, onclick: () => {
        editor.value = `SELECT * FROM ${view.includes('@') ? `"${view}"` : view} LIMIT 100;`;
        editor.focus();
      } }, view),
      e.format ? h('span', { class: 'badge' }, e.format) : null,
      e.path === 'error'
        ? h('span', { class: 'badge warn', title: e.reason }, '⚠ ', e.reason)
        : h('span', {
          class: `badge ${e.path === 'native' ? 'ok' : ''}${e.pending ? ' pending' : ''}`,
          'data-pending': e.pending ? 'true' : null,
          title: (e.path === 'native' ? 'read by DuckDB through the S3 proxy' : 'decoded by Larder and loaded as Arrow')
            + (e.pending ? ' · not opened yet: opened by the first query that names it' : ''),
        }, e.path))));
  }

  const showCue = (text) => {
    if (!cue) return;
    cue.textContent = text;
    cue.hidden = false;
    cue.classList.remove('flash-in');
    void cue.offsetWidth; // restart the animation
    cue.classList.add('flash-in');
  };

  const unsubscribe = catalog.onChange(async (event) => {
    if (!root.isConnected) {
      unsubscribe();
      return;
    }
    renderCatalog();
    if (event.type !== 'commit') return;
    const c = event.commit;
    const names = [c.table, c.renamed_from].filter(Boolean).map((n) => n.toLowerCase());
    const sql = lastGood?.toLowerCase() ?? '';
    const reads = names.some((n) => new RegExp(`(^|[^a-z0-9_@])${n}([^a-z0-9_@]|$)`).test(sql));
    if (reads && !running) {
      showCue(`↻ ${c.table} changed (commit #${c.seq}): results refreshed`);
      await run();
    } else {
      showCue(`${c.table} changed (commit #${c.seq})`);
    }
  });

  const controller = {
    root,
    editor,
    renderHistory() {
      if (!historyList) return;
      historyList.replaceChildren(...readHistory().map((e) => h('li', { class: e.ok ? 'ok' : 'failed' },
        h('button', { type: 'button', class: 'history-sql', title: e.sql, onclick: () => {
          editor.value = e.sql;
          editor.focus();
        } }, e.sql.length > 120 ? `${e.sql.slice(0, 120)}…` : e.sql),
        h('span', { class: 'muted small' },
          new Date(e.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }),
          ' · ', e.ok ? `${fmt(e.rows)} row${e.rows === 1 ? '' : 's'}` : 'error'))));
    },
  };

  attachCompletion(editor, () => {
    const words = [];
    if (sample) words.push({ word: 'pantry', kind: 'sample table' });
    for (const [view, e] of catalog.status) {
      if (e.path === 'error' || view.includes('@')) continue;
      words.push({ word: view, kind: 'table' });
      for (const c of e.columns ?? []) words.push({ word: c, kind: `column · ${view}` });
    }
    return words;
  });
  runButton.addEventListener('click', run);
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  // Content restored from htmx's history cache may carry a dead results table: start clean.
  results.replaceChildren();
  errorBox.hidden = true;
  if (pendingSql !== null) {
    editor.value = pendingSql;
    pendingSql = null;
  }
  mounted.add(controller);
  controller.renderHistory();

  setStatus('DuckDB starting…', 'starting');
  firstSample ??= sample;
  start()
    .then(async (info) => {
      let note = '';
      try {
        await sample;
      } catch (err) {
        console.warn('larder: sample data not loaded:', err);
        note = ' · sample data unavailable';
      }
      setStatus(`DuckDB ${info.version} · ready in ${(info.instantiateMs / 1000).toFixed(1)} s${note}`, 'ready');
      try {
        const loaded = await loadCatalog();
        renderCatalog();
        if (loaded) {
          const broken = [...catalog.status.values()].filter((e) => e.path === 'error').length;
          setStatus(`DuckDB ${info.version} · ready in ${(info.instantiateMs / 1000).toFixed(1)} s${note} · ${catalog.status.size} tables in ${Math.round(loaded.ms)} ms${broken ? ` (${broken} ⚠)` : ''}`, 'ready');
        }
      } catch (err) {
        if (leaving) return;
        console.error('larder: catalog not loaded', err);
        if (catalogList) catalogList.replaceChildren(h('li', { class: 'error small' }, `Catalog not loaded: ${err?.message ?? err}`));
      }
    })
    .catch((err) => {
      console.error('larder: DuckDB failed to start', err);
      setStatus(`DuckDB failed to start: ${err?.message ?? err}`, 'failed');
    });
}

function mountAll() {
  for (const c of mounted) if (!c.root.isConnected) mounted.delete(c);
  for (const root of document.querySelectorAll('#island')) {
    if (root.querySelector('#sql-editor') && root.querySelector('#run-query')) mount(root);
  }
}

// Saved queries open through an HX-Trigger response header: {"larder:open-query": {id, name}}.
// The SQL itself is fetched from the JSON API (it can be far too large for a header).
let openRequest = 0;
document.addEventListener('larder:open-query', async (e) => {
  const id = e.detail?.id;
  if (typeof id !== 'string') return;
  const ticket = ++openRequest;
  const res = await fetch(`/api/saved-queries/${encodeURIComponent(id)}`, { headers: { Accept: 'application/json' } });
  if (!res.ok || ticket !== openRequest) return; // a later open won
  const { sql } = await res.json();
  const editor = document.getElementById('sql-editor');
  if (!editor) {
    pendingSql = sql;
    return;
  }
  editor.value = sql;
  editor.focus();
});

for (const name of ['htmx:load', 'htmx:afterSettle', 'htmx:historyRestore']) {
  document.addEventListener(name, mountAll);
}
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mountAll);
else mountAll();

window.larder = {
  /** Resolves once DuckDB (and the page's sample data, if any) is ready: { version, instantiateMs }. */
  get ready() {
    return start().then(async ({ version, instantiateMs }) => {
      await (firstSample ?? Promise.resolve()).catch(() => {});
      return { version, instantiateMs };
    });
  },
  /** Run SQL: { columns: [{ name, type }], rows: [[...]] } with plain JS values (see plain()). */
  async query(sql) {
    await loadCatalog().catch(() => {});
    await catalog.prepare(sql);
    const table = await rawQuery(sql);
    return { columns: columnsOf(table), rows: rowsOf(table) };
  },
  csrfToken,
  /** The catalog as registered in this tab: { name: { path, reason, format, seq } }. */
  catalog: {
    status: () => Object.fromEntries([...catalog.status].map(([k, { snapshot, ...e }]) => [k, e])),
    /** True once every table known at load is registered in DuckDB (the warm-up is done). */
    get warmed() {
      return catalog.warmed;
    },
    load: () => loadCatalog(),
    get seq() {
      return commits?.seq ?? null;
    },
    get connected() {
      return commits?.connected ?? false;
    },
  },
};
