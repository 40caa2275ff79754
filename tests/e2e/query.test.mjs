// The query page, end to end: the real server, a real headless Chromium, DuckDB-WASM in it.
//
// One signed-in tab walks through the page like a person would (each step builds on the one
// before): sign in with the start-up link, wait for DuckDB, run queries, check the numbers
// against the sample CSV read straight from disk, save a query, reload, open it again, leave
// for Settings and come back (DuckDB must survive), and recover from bad SQL.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  ARTIFACTS,
  SAMPLE_CSV,
  duckdbReady,
  launchBrowser,
  queryError,
  results,
  runSql,
  saveQuery,
  savedItem,
  useLarder,
  watch,
} from './larder.mjs';

// ---------------------------------------------------------------------------------------------
// The sample, computed independently of DuckDB: plain JS over the CSV file on disk, with money
// in integer cents (BigInt) so there is no floating point anywhere.

function readPantry() {
  const [header, ...lines] = fs.readFileSync(SAMPLE_CSV, 'utf8').trimEnd().split('\n');
  const names = header.trim().split(',');
  assert.deepEqual(names, ['purchased_on', 'item', 'category', 'store', 'quantity', 'unit_price']);
  return lines.map((line, i) => {
    assert.ok(!line.includes('"'), `pantry.csv line ${i + 2}: quoted fields are not handled here`);
    const cells = line.trim().split(',');
    assert.equal(cells.length, names.length, `pantry.csv line ${i + 2}`);
    return Object.fromEntries(names.map((n, j) => [n, cells[j]]));
  });
}

function cents(price) {
  const m = /^(\d+)(?:\.(\d{1,2}))?$/.exec(price);
  assert.ok(m, `unexpected unit_price ${price}`);
  return BigInt(m[1]) * 100n + BigInt((m[2] ?? '').padEnd(2, '0'));
}

const money = (c) => `${c / 100n}.${String(c % 100n).padStart(2, '0')}`;

/** [[category, purchases, spent]] ordered by category, as the results table shows them. */
function spendPerCategory(rows) {
  const by = new Map();
  for (const r of rows) {
    assert.match(r.quantity, /^\d+$/, 'quantity is a whole number in the sample');
    const acc = by.get(r.category) ?? { n: 0, spent: 0n };
    acc.n += 1;
    acc.spent += BigInt(r.quantity) * cents(r.unit_price);
    by.set(r.category, acc);
  }
  return [...by.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([category, { n, spent }]) => [category, String(n), money(spent)]);
}

const SPEND_SQL = `SELECT category, count(*) AS purchases, sum(quantity * unit_price) AS spent
FROM pantry
GROUP BY category
ORDER BY category`;

// ---------------------------------------------------------------------------------------------

describe('query page', { timeout: 90_000 }, () => {
  const larder = useLarder();
  const csv = readPantry();
  let browser;
  let context;
  let page;
  let seen;
  let statusText; // "DuckDB vX · ready in N s" of the first instantiation after the reload

  before(async () => {
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    seen = watch(context);
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
  });

  it('signs in with the one-time link and lands on the query page', async () => {
    const res = await page.goto(larder.loginUrl);
    assert.equal(res.status(), 200);
    // Opening the link only asks for confirmation: nothing is signed in yet.
    assert.equal(await page.textContent('#login-user'), 'owner');
    assert.equal((await context.cookies()).find((c) => c.name === 'larder_session'), undefined);
    await Promise.all([page.waitForURL(`${larder.origin}/query`), page.click('#confirm-login')]);
    assert.equal(page.url(), `${larder.origin}/query`);
    const cookie = (await context.cookies()).find((c) => c.name === 'larder_session');
    assert.ok(cookie, 'a session cookie was set');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');
    assert.notEqual(await page.getAttribute('meta[name="csrf-token"]', 'content'), '');
    assert.equal(await page.textContent('#signed-in-as'), 'owner');
    assert.equal(await page.getAttribute('nav a[href="/query"]', 'aria-current'), 'page');
  });

  it('starts DuckDB', async () => {
    const text = await duckdbReady(page);
    assert.match(text, /^DuckDB v\d+\.\d+\.\d+ · ready in \d+\.\d s$/);
    const info = await page.evaluate(() => window.larder.ready);
    assert.match(info.version, /^v\d+\.\d+\.\d+$/);
    assert.ok(info.instantiateMs > 0);
    assert.equal(seen.count(/\/duckdb-eh\.wasm$/), 1, 'the wasm is fetched once');
  });

  it('runs SELECT 42 AS answer', async () => {
    await runSql(page, 'SELECT 42 AS answer');
    assert.equal(await queryError(page), null);
    const r = await results(page);
    assert.deepEqual(r.names, ['answer']);
    assert.deepEqual(r.types, ['INTEGER']);
    assert.deepEqual(r.rows, [['42']]);
    assert.match(r.summary, /^rows 1–1 of 1 · \d+(\.\d)? ms$/);
    assert.match(await page.textContent('#query-history li:first-child .history-sql'), /^SELECT 42 AS answer$/);
  });

  it('computes spend per category over the sample CSV, matching the file on disk', async () => {
    const expected = spendPerCategory(csv);
    assert.equal(expected.length, 8, 'the sample has 8 categories');

    await runSql(page, SPEND_SQL);
    assert.equal(await queryError(page), null);
    const r = await results(page);
    assert.deepEqual(r.names, ['category', 'purchases', 'spent']);
    assert.deepEqual(r.types.slice(0, 2), ['VARCHAR', 'BIGINT']);
    assert.match(r.types[2], /^DECIMAL\(\d+,2\)$/);
    assert.match(r.summary, /^rows 1–8 of 8 · /);
    assert.equal(r.rows.length, 8);
    assert.deepEqual(r.rows, expected, 'the table equals the JS computation over pantry.csv');

    // The island's own API agrees with what it rendered.
    const api = await page.evaluate(async (sql) => {
      const { columns, rows } = await window.larder.query(sql);
      return { columns, rows: rows.map((row) => row.map(String)) };
    }, SPEND_SQL);
    assert.deepEqual(api.columns.map((c) => c.name), ['category', 'purchases', 'spent']);
    assert.deepEqual(api.rows, r.rows);

    // And the whole file made it in.
    const totals = await page.evaluate(async () => {
      const { rows } = await window.larder.query(
        'SELECT count(*)::INTEGER, sum(quantity * unit_price)::VARCHAR, count(DISTINCT store)::INTEGER FROM pantry',
      );
      return rows[0];
    });
    const total = csv.reduce((s, row) => s + BigInt(row.quantity) * cents(row.unit_price), 0n);
    assert.deepEqual(totals, [csv.length, money(total), new Set(csv.map((row) => row.store)).size]);
    assert.equal(csv.length, 429);

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'query.png') });
  });

  let savedId;
  const savedName = 'Spend per category (e2e)';

  it('saves the query and finds it again after a reload', async () => {
    savedId = await saveQuery(page, savedName);
    assert.match(savedId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(await page.textContent('#flash .flash'), `Saved “${savedName}”.`);
    // The form is now bound to the saved query.
    assert.equal(await page.inputValue('#save-form input[name=id]'), savedId);

    const api = await context.request.get(`${larder.origin}/api/saved-queries/${savedId}`);
    assert.equal(api.status(), 200);
    const body = await api.json();
    assert.equal(body.name, savedName);
    assert.equal(body.sql.trim(), SPEND_SQL);

    await page.reload();
    statusText = await duckdbReady(page);
    const item = savedItem(page, savedName);
    assert.equal(await item.count(), 1);
    assert.equal(await item.getAttribute('data-saved-query'), savedId);
    assert.equal(await page.locator('#saved-queries li[data-saved-query]').count(), 1);
  });

  it('opens the saved query into the editor', async () => {
    await page.fill('#sql-editor', 'SELECT 1');
    await savedItem(page, savedName).getByRole('link').click();
    await page.waitForFunction((sql) => document.querySelector('#sql-editor').value.trim() === sql, SPEND_SQL);
    assert.equal(await page.inputValue('#save-form input[name=id]'), savedId);
    assert.equal(await page.inputValue('#save-form input[name=name]'), savedName);
    // It runs as saved.
    await runSql(page, await page.inputValue('#sql-editor'));
    assert.deepEqual((await results(page)).rows, spendPerCategory(csv));
  });

  it('keeps the same DuckDB across boosted navigation to Settings and back', async () => {
    const wasmBefore = seen.count(/\/duckdb-eh\.wasm$/);
    const csvBefore = seen.count(/\/samples\/pantry\.csv$/);
    await page.evaluate(() => {
      window.e2eLarderRef = window.larder;
      window.e2eDocumentMarker = 'still the same document';
    });

    await page.click('nav a[href="/settings"]');
    await page.waitForSelector('#page_size');
    assert.equal(page.url(), `${larder.origin}/settings`);
    assert.equal(await page.locator('#island').count(), 0);
    assert.equal(await page.evaluate(() => window.e2eDocumentMarker), 'still the same document', 'htmx boost, no reload');
    assert.equal(await page.getAttribute('nav a[href="/settings"]', 'aria-current'), 'page');

    await page.click('nav a[href="/query"]');
    // The status line also says how long the catalog took, which differs per page: compare the
    // instantiation part.
    const instantiated = (text) => /DuckDB \S+ · ready in [\d.]+ s/.exec(text)?.[0];
    assert.equal(instantiated(await duckdbReady(page)), instantiated(statusText),
      'instantiation time unchanged: not re-instantiated');
    assert.equal(page.url(), `${larder.origin}/query`);
    assert.equal(await page.evaluate(() => window.e2eDocumentMarker), 'still the same document');
    assert.equal(await page.evaluate(() => window.e2eLarderRef === window.larder), true);
    assert.equal(seen.count(/\/duckdb-eh\.wasm$/), wasmBefore, 'no second request for duckdb-eh.wasm');
    assert.equal(seen.count(/\/samples\/pantry\.csv$/), csvBefore, 'the sample is not fetched again');

    // The re-mounted island works: pantry is still there.
    await runSql(page, 'SELECT count(*) AS n FROM pantry');
    assert.deepEqual((await results(page)).rows, [[String(csv.length)]]);
    assert.equal(await savedItem(page, savedName).count(), 1);
  });

  it('shows bad SQL as a clean error and keeps working', async () => {
    await runSql(page, 'SELEC oops FROM');
    const message = await queryError(page);
    assert.ok(message, '#query-error is shown');
    assert.match(message, /^Parser Error: syntax error at or near "SELEC"/);
    assert.equal(await page.getAttribute('#query-error', 'role'), 'alert');
    assert.equal((await results(page)).present, false, 'no stale results table');
    assert.equal(await page.getAttribute('#query-history li:first-child', 'class'), 'failed');

    await runSql(page, 'SELECT 1 + 1 AS two');
    assert.equal(await queryError(page), null);
    assert.deepEqual((await results(page)).rows, [['2']]);
  });

  it('refuses read_parquet cleanly (no extension download, no crash)', async () => {
    await runSql(page, "SELECT * FROM read_parquet('x.parquet')");
    const message = await queryError(page);
    assert.ok(message, '#query-error is shown');
    assert.doesNotMatch(message, /unreachable|RuntimeError|memory access|Aborted/i);
    assert.match(message, /parquet/i);

    await runSql(page, "SELECT 'still alive' AS s");
    assert.equal(await queryError(page), null);
    assert.deepEqual((await results(page)).rows, [['still alive']]);
  });

  it('stayed on the Larder origin without console or page errors', () => {
    assert.ok(seen.requests.length > 10, 'requests were recorded');
    assert.deepEqual(seen.foreign(larder.origin), []);
    assert.deepEqual(seen.consoleErrors, []);
    assert.deepEqual(seen.pageErrors, []);
    assert.deepEqual(seen.failedResponses, []);
    // One full load at sign-in, one for page.reload(); none for the boosted navigations.
    assert.equal(seen.count(/\/duckdb-eh\.wasm$/), 2);
  });
});
