// The catalog in the browser: Parquet, NDJSON and CSV snapshots committed (through the Catalog
// page and the API) are registered by the query page's island in one go; a join across them
// returns exactly what native DuckDB (PyPI) returns on the same files; a commit made through the
// API while the tab is open refreshes the table and the visible result without a reload; a table
// whose file is missing shows ⚠ while the others work; "table@commit" reads older data; and
// another user's tab hears nothing of it and cannot read any of it.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { ARTIFACTS, duckdbReady, launchBrowser, results, runSql, useLarder, watch } from './larder.mjs';

const execFileP = promisify(execFile);

// Writes the shop's files with native DuckDB and prints what DuckDB itself answers on them.
const PYTHON = String.raw`
import duckdb, json, sys
root = sys.argv[1]
con = duckdb.connect()
con.execute(f"""
COPY (SELECT i AS order_id, 1 + i % 7 AS customer_id, CAST(i * 1.25 AS DECIMAL(10,2)) AS amount,
             TIMESTAMP '2026-11-01 08:00:00' + INTERVAL (i) HOUR AS ordered_at
      FROM range(1, 41) t(i)) TO '{root}/orders-v1.parquet' (FORMAT PARQUET)""")
con.execute(f"""
COPY (SELECT i AS order_id, 1 + i % 7 AS customer_id, CAST(i * 1.25 AS DECIMAL(10,2)) AS amount,
             TIMESTAMP '2026-11-01 08:00:00' + INTERVAL (i) HOUR AS ordered_at
      FROM range(1, 61) t(i)) TO '{root}/orders-v2.parquet' (FORMAT PARQUET)""")
con.execute(f"""
COPY (SELECT i AS customer_id, 'customer ' || i AS name, ['Oslo', 'Lima', 'Pune'][1 + i % 3] AS city
      FROM range(1, 8) t(i)) TO '{root}/customers.ndjson' (FORMAT JSON)""")
con.execute(f"""
COPY (SELECT 1 + i % 60 AS order_id, 'sku-' || (i % 5) AS sku, 1 + i % 4 AS qty
      FROM range(0, 90) t(i)) TO '{root}/items.csv' (HEADER)""")
join = """
SELECT c.city, count(*) AS lines, sum(i.qty) AS units, sum(o.amount) AS amount
FROM {orders} o JOIN {customers} c USING (customer_id) JOIN {items} i USING (order_id)
GROUP BY c.city ORDER BY c.city"""
sql = join.format(orders=f"read_parquet('{root}/orders-v1.parquet')",
                  customers=f"read_json('{root}/customers.ndjson', format = 'newline_delimited')",
                  items=f"read_csv('{root}/items.csv')")
rows = [[str(v) for v in r] for r in con.execute(sql).fetchall()]
count = lambda f: con.execute(f"SELECT count(*) FROM read_parquet('{root}/{f}')").fetchone()[0]
print(json.dumps({"join": rows, "v1": count("orders-v1.parquet"), "v2": count("orders-v2.parquet")}))
`;

const JOIN = `SELECT c.city, count(*) AS lines, sum(i.qty) AS units, sum(o.amount) AS amount
FROM orders o JOIN customers c USING (customer_id) JOIN items i USING (order_id)
GROUP BY c.city ORDER BY c.city`;

/** A JSON API call from inside the page (its session cookie and CSRF token). */
function api(page, method, url, body) {
  return page.evaluate(async ({ method, url, body }) => {
    const res = await fetch(url, {
      method,
      headers: { 'X-CSRF-Token': window.larder.csrfToken(), 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, json, text };
  }, { method, url, body });
}

/** The island's table list: { name: path-or-⚠ }. */
async function badges(page) {
  return page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll('#catalog-status li[data-table]')].map((li) => [li.dataset.table, li.dataset.path]),
  ));
}

async function waitForTables(page, n) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll('#catalog-status li[data-table]').length >= n,
      n, { timeout: 30_000 });
  } catch (err) {
    const state = await page.evaluate(() => ({
      list: document.querySelector('#catalog-status')?.outerHTML,
      status: document.querySelector('#duckdb-status')?.textContent,
      catalog: window.larder.catalog.status(),
    }));
    throw new Error(`${err.message}\n${JSON.stringify(state, null, 1)}`);
  }
}

describe('the catalog in the browser', { timeout: 240_000 }, () => {
  const larder = useLarder();
  let browser;
  let alice;
  let bob;
  let expected;
  let dir;

  before(async () => {
    browser = await launchBrowser();
    const open = async (link) => {
      const context = await browser.newContext();
      const seen = watch(context);
      const page = await context.newPage();
      await page.goto(link);
      await Promise.all([page.waitForURL(`${larder.origin}/query`), page.click('#confirm-login')]);
      await duckdbReady(page);
      return { context, seen, page };
    };
    alice = await open(larder.loginUrl);
    bob = await open(await larder.loginLink('bob'));
    const me = await api(alice.page, 'GET', '/api/me');
    dir = path.join(larder.dataDir, 'storage', 'users', me.json.id, 'local', 'shop');
    fs.mkdirSync(dir, { recursive: true });
    const { stdout } = await execFileP(process.env.E2E_PYTHON ?? 'python3', ['-c', PYTHON, dir], { timeout: 120_000 });
    expected = JSON.parse(stdout);
  });

  after(async () => {
    await browser?.close();
  });

  it('commits a snapshot through the Catalog page', async () => {
    const { page } = alice;
    await page.click('nav a[href="/catalog"]');
    await page.waitForURL(`${larder.origin}/catalog`);
    await page.fill('#commit-table', 'orders');
    await page.fill('#commit-uri', 'store://local/shop/orders-v1.parquet');
    await page.fill('#commit-message', 'November');
    await page.click('#commit-form button[type=submit]');
    const row = page.locator('#table-orders');
    await row.waitFor();
    assert.equal(await row.locator('[data-format]').textContent(), 'parquet');
    assert.match(await page.locator('#flash').textContent(), /Committed #1: orders now reads store:\/\/local\/shop\/orders-v1\.parquet/);
    // Bad input: a clear message in the page's flash area, and nothing committed.
    await page.fill('#commit-table', 'orders');
    await page.fill('#commit-uri', 'store://local/shop/nope.parquet');
    await page.click('#commit-form button[type=submit]');
    await page.locator('#flash .flash.error').waitFor();
    assert.match(await page.locator('#flash').textContent(), /no object at store:\/\/local\/shop\/nope\.parquet/);
    // The schema was read from the Parquet footer (in the background): reload shows it.
    await page.waitForFunction(async () => {
      const t = await (await fetch('/api/catalog/tables/orders')).json();
      return t.schema !== null;
    }, null, { timeout: 10_000 });
    await page.reload();
    await page.locator('#table-orders [data-schema="known"]').waitFor();
    assert.match(await page.locator('#table-orders [data-rows]').textContent(), /40 rows/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'catalog-page.png'), fullPage: true });
  });

  it('registers every table and joins them exactly as native DuckDB does', async () => {
    const { page } = alice;
    for (const [table, file] of [['customers', 'customers.ndjson'], ['items', 'items.csv']]) {
      const res = await api(page, 'POST', '/api/catalog/commits', { table, uri: `store://local/shop/${file}` });
      assert.equal(res.status, 201, res.text);
    }
    await page.click('nav a[href="/query"]');
    await page.waitForURL(`${larder.origin}/query`);
    await waitForTables(page, 3);
    // Offline there is no parquet/json extension: those come over the Arrow path; CSV is native.
    assert.deepEqual(await badges(page), { customers: 'arrow', items: 'native', orders: 'arrow' });
    const got = await page.evaluate((sql) => window.larder.query(sql), JOIN);
    assert.deepEqual(got.rows.map((r) => r.map(String)), expected.join);
    await runSql(page, JOIN);
    const shown = await results(page);
    assert.deepEqual(shown.names, ['city', 'lines', 'units', 'amount']);
    assert.equal(shown.rows.length, expected.join.length);
    // Ctrl+Space completes table names, and columns from the schemas read on the server.
    await page.fill('#sql-editor', 'SELECT ordered_');
    await page.focus('#sql-editor');
    await page.keyboard.press('End');
    await page.keyboard.press('Control+Space');
    await page.locator('.completion li[data-word="ordered_at"]').waitFor();
    await page.keyboard.press('Enter');
    await page.keyboard.type(' FROM ord');
    await page.keyboard.press('Control+Space');
    assert.deepEqual(await page.locator('.completion li').evaluateAll((els) => els.map((e) => e.dataset.word)),
      ['order_id', 'ordered_at', 'orders']);
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Tab');
    assert.equal(await page.inputValue('#sql-editor'), 'SELECT ordered_at FROM orders');
  });

  it('refreshes the table and the visible result when a commit arrives', async () => {
    const { page, context } = alice;
    await runSql(page, 'SELECT count(*) AS n FROM orders');
    assert.deepEqual((await results(page)).rows, [[String(expected.v1)]]);
    await page.evaluate(() => {
      window.e2eNotReloaded = true;
    });
    const t0 = Date.now();
    // The API, from outside the tab (same user, another client).
    const csrf = await page.evaluate(() => window.larder.csrfToken());
    const res = await context.request.post(`${larder.origin}/api/catalog/commits`, {
      headers: { 'X-CSRF-Token': csrf },
      data: { table: 'orders', uri: 'store://local/shop/orders-v2.parquet', message: 'December' },
    });
    assert.equal(res.status(), 201);
    await page.waitForFunction((n) => {
      const cell = document.querySelector('#query-results tbody td');
      return cell?.textContent === String(n);
    }, expected.v2, { timeout: 15_000 });
    const ms = Date.now() - t0;
    assert.equal(await page.evaluate(() => window.e2eNotReloaded), true, 'the page was not reloaded');
    assert.match(await page.locator('#refresh-cue').textContent(), /orders changed \(commit #4\)/);
    console.log(`commit -> visible result refreshed in ${ms} ms`);
  });

  it('time travel reads the older snapshot', async () => {
    const { page } = alice;
    const got = await page.evaluate(() => window.larder.query('SELECT count(*) AS n FROM "orders@1"'));
    assert.equal(String(got.rows[0][0]), String(expected.v1));
    const now = await page.evaluate(() => window.larder.query('SELECT count(*) AS n FROM orders'));
    assert.equal(String(now.rows[0][0]), String(expected.v2));
    // The history's "Query as of" link opens the editor on it.
    await page.goto(`${larder.origin}/query?table=orders&as_of=1`);
    await duckdbReady(page);
    assert.equal(await page.inputValue('#sql-editor'), 'SELECT * FROM "orders@1" LIMIT 100;');
    await runSql(page, 'SELECT count(*) FROM "orders@1"');
    assert.deepEqual((await results(page)).rows, [[String(expected.v1)]]);
    await runSql(page, 'SELECT * FROM "orders@0"');
    assert.match(await page.locator('#query-error').textContent(), /no commit 0/);
  });

  it('shows ⚠ for a table whose file is gone and keeps the others working', async () => {
    const { page } = alice;
    fs.copyFileSync(path.join(dir, 'items.csv'), path.join(dir, 'gone.csv'));
    assert.equal((await api(page, 'POST', '/api/catalog/commits', { table: 'gone', uri: 'store://local/shop/gone.csv' })).status, 201);
    fs.copyFileSync(path.join(dir, 'customers.ndjson'), path.join(dir, 'gone.ndjson'));
    assert.equal((await api(page, 'POST', '/api/catalog/commits', { table: 'gone_too', uri: 'store://local/shop/gone.ndjson' })).status, 201);
    fs.rmSync(path.join(dir, 'gone.csv'));
    fs.rmSync(path.join(dir, 'gone.ndjson'));
    await page.reload();
    await duckdbReady(page);
    await waitForTables(page, 5);
    // Tables are usable by name at once and opened in the background: wait for that to finish.
    await page.waitForFunction(() => window.larder.catalog.warmed, null, { timeout: 30_000 });
    await page.waitForFunction(() => !document.querySelector('#catalog-status [data-pending]'));
    const b = await badges(page);
    assert.equal(b.gone, 'error');
    assert.equal(b.gone_too, 'error');
    assert.equal(b.orders, 'arrow');
    const reason = await page.locator('#catalog-status li[data-table="gone_too"] .badge.warn').textContent();
    assert.match(reason, /⚠.*(no such object|not found|gone\.ndjson)/i);
    const got = await page.evaluate((sql) => window.larder.query(sql), JOIN);
    assert.deepEqual(got.rows.map((r) => r.map(String)).length, expected.join.length);
    await runSql(page, JOIN);
    await page.screenshot({ path: path.join(ARTIFACTS, 'catalog-query.png'), fullPage: true });
  });

  it('edits, renames, deletes and restores on the Catalog page', async () => {
    const { page } = alice;
    page.on('dialog', (d) => d.accept()); // hx-confirm on Delete
    await page.goto(`${larder.origin}/catalog`);
    await page.click('#table-items [data-action="edit"]');
    await page.fill('#edit-name-items', 'line_items');
    await page.fill('#edit-description-items', 'one row per order line');
    await page.click('#table-items button[type=submit]');
    const row = page.locator('#table-line_items');
    await row.waitFor();
    assert.equal(await row.locator('.table-description').textContent(), 'one row per order line');
    assert.match(await page.locator('#flash').textContent(), /Saved items: #\d+ described, #\d+ renamed/);
    await row.locator('[data-action="history"]').click();
    await row.locator('table.history').waitFor();
    const whats = await row.locator('table.history tbody tr td:nth-child(3)').allTextContents();
    assert.deepEqual(whats, ['renamed from items', 'described', 'created']);
    // A rename to a name in use is refused with the reason, and changes nothing.
    await page.click('#table-line_items [data-action="edit"]');
    await page.fill('#edit-name-line_items', 'orders');
    await page.click('#table-line_items button[type=submit]');
    await page.locator('#flash .flash.error').waitFor();
    assert.match(await page.locator('#flash').textContent(), /a table named "orders" already exists/);
    await page.goto(`${larder.origin}/catalog`);
    await page.click('#table-line_items [data-action="delete"]');
    await page.locator('#table-line_items').waitFor({ state: 'detached' });
    await page.check('#show-deleted');
    await page.locator('#table-line_items.deleted').waitFor();
    await page.click('#table-line_items [data-action="restore"]');
    await page.locator('#table-line_items:not(.deleted)').waitFor();
    // Renames reach the query page's DuckDB: the new name works, the old one is gone.
    await page.goto(`${larder.origin}/query`);
    await duckdbReady(page);
    await waitForTables(page, 5);
    const n = await page.evaluate(() => window.larder.query('SELECT count(*) FROM line_items'));
    assert.equal(String(n.rows[0][0]), '90');
    assert.ok(!('items' in (await badges(page))));
  });

  it('keeps another user out of all of it', async () => {
    const { page } = bob;
    await page.evaluate(() => {
      window.e2eCommits = 0;
      document.body.addEventListener('larder:commit', () => {
        window.e2eCommits += 1;
      });
    });
    await page.waitForFunction(() => window.larder.catalog.connected, null, { timeout: 10_000 });
    await alice.page.waitForFunction(() => window.larder.catalog.connected, null, { timeout: 10_000 });
    const before = await alice.page.evaluate(() => window.larder.catalog.seq);
    assert.equal((await api(alice.page, 'POST', '/api/catalog/commits', { op: 'describe', table: 'orders', description: 'all orders' })).status, 201);
    await alice.page.waitForFunction((s) => window.larder.catalog.seq > s, before, { timeout: 10_000 });
    await page.waitForTimeout(500);
    assert.equal(await page.evaluate(() => window.e2eCommits), 0, "Bob's tab heard Alice's commit");
    for (const url of ['/api/table-data/orders?format=arrow', '/api/catalog/tables/orders/schema',
      '/api/catalog/tables/orders', '/api/table-data/orders?as_of=1']) {
      assert.equal((await api(page, 'GET', url)).status, 404, url);
    }
    assert.deepEqual((await api(page, 'GET', '/api/catalog')).json.tables, []);
    // Through the S3 proxy too: Bob's credentials do not reach Alice's objects.
    const creds = (await api(page, 'POST', '/api/storage/proxy-credentials', {})).json;
    const got = await page.evaluate(async (c) => {
      const q = (v) => `'${String(v).replaceAll("'", "''")}'`;
      for (const s of [`SET s3_endpoint=${q(c.browser_endpoint)}`, `SET s3_region=${q(c.region)}`,
        `SET s3_access_key_id=${q(c.access_key_id)}`, `SET s3_secret_access_key=${q(c.secret_access_key)}`]) {
        await window.larder.query(s);
      }
      try {
        await window.larder.query("SELECT * FROM read_csv('s3://local/shop/items.csv')");
        return 'read';
      } catch (e) {
        return e.message;
      }
    }, creds);
    assert.notEqual(got, 'read');
  });

  it('made no request to any other origin', () => {
    for (const who of [alice, bob]) {
      assert.deepEqual(who.seen.foreign(larder.origin), []);
      assert.deepEqual(who.seen.pageErrors, []);
    }
  });
});
