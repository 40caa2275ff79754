// DuckDB-WASM against Larder's extension mirror (/duckdb-ext). The island's DuckDB asks this
// origin, with the session cookie, for exactly <version>/wasm_eh/<name>.duckdb_extension.wasm;
// what it gets reaches DuckDB's loader (which checks the signature), a brotli variant is decoded
// by the browser on the way, and a missing extension is a clean error, not a crash. No real
// extension is needed (none is available offline): an unsigned WebAssembly module proves the
// path, the cookie, the content type and the encoding, because only a module that arrived intact
// gets as far as the signature check.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';

import { duckdbReady, launchBrowser, queryError, results, runSql, useLarder, watch } from './larder.mjs';

/** A valid, empty WebAssembly module: no DuckDB signature. */
const UNSIGNED = Buffer.from('0061736d01000000', 'hex');

describe('the DuckDB extension mirror', { timeout: 90_000 }, () => {
  const larder = useLarder();
  let browser;
  let page;
  let seen;
  let dir;
  const mirror = []; // { path, status, contentType, contentEncoding, cookie, acceptEncoding }

  before(async () => {
    browser = await launchBrowser();
    const context = await browser.newContext();
    seen = watch(context);
    context.on('response', async (r) => {
      const url = new URL(r.url());
      if (!url.pathname.startsWith('/duckdb-ext/')) return;
      const sent = await r.request().allHeaders();
      const got = await r.allHeaders();
      mirror.push({
        path: url.pathname,
        status: r.status(),
        contentType: got['content-type'],
        contentEncoding: got['content-encoding'] ?? null,
        cookie: /(^|; )larder_session=/.test(sent.cookie ?? ''),
        acceptEncoding: sent['accept-encoding'] ?? null,
      });
    });
    page = await context.newPage();
    await page.goto(larder.loginUrl);
    await Promise.all([page.waitForURL(`${larder.origin}/query`), page.click('#confirm-login')]);
    await duckdbReady(page);
    const { version } = await page.evaluate(() => window.larder.ready);
    dir = path.join(larder.dataDir, 'duckdb-ext', version, 'wasm_eh');
    fs.mkdirSync(dir, { recursive: true });
  });

  after(async () => {
    await browser?.close();
  });

  it('fetches LOAD parquet from this origin with the session and hands DuckDB the bytes', async () => {
    fs.writeFileSync(path.join(dir, 'parquet.duckdb_extension.wasm'), UNSIGNED);
    await runSql(page, 'LOAD parquet');
    assert.match(
      await queryError(page),
      /^IO Error: Extension "http:\/\/127\.0\.0\.1:\d+\/duckdb-ext\/v1\.4\.3\/wasm_eh\/parquet\.duckdb_extension\.wasm" could not be loaded because its signature is either missing or invalid/,
    );
    assert.equal(mirror.length, 1, JSON.stringify(mirror));
    const { acceptEncoding, ...parquet } = mirror[0];
    assert.deepEqual(parquet, {
      path: '/duckdb-ext/v1.4.3/wasm_eh/parquet.duckdb_extension.wasm',
      status: 200,
      contentType: 'application/wasm',
      contentEncoding: null, // there is no .br next to it
      cookie: true, // the worker's synchronous XMLHttpRequest carries the session
    });
    assert.ok(acceptEncoding);
  });

  it('serves the brotli variant to the browser, which decodes it for DuckDB', async () => {
    fs.writeFileSync(path.join(dir, 'icu.duckdb_extension.wasm'), UNSIGNED);
    fs.writeFileSync(path.join(dir, 'icu.duckdb_extension.wasm.br'), zlib.brotliCompressSync(UNSIGNED));
    await runSql(page, 'LOAD icu');
    assert.match(await queryError(page), /icu\.duckdb_extension\.wasm" could not be loaded because its signature/);
    const icu = mirror.at(-1);
    assert.equal(icu.path, '/duckdb-ext/v1.4.3/wasm_eh/icu.duckdb_extension.wasm');
    assert.match(icu.acceptEncoding, /\bbr\b/, 'the worker asks for brotli');
    assert.equal(icu.contentEncoding, 'br');
    assert.equal(icu.contentType, 'application/wasm');
  });

  it('reports a missing extension cleanly and keeps working', async () => {
    await runSql(page, 'LOAD json');
    assert.match(
      await queryError(page),
      /^IO Error: Extension http:\/\/127\.0\.0\.1:\d+\/duckdb-ext\/v1\.4\.3\/wasm_eh\/json\.duckdb_extension\.wasm is not available/,
    );
    assert.equal(mirror.at(-1).status, 404);
    await runSql(page, "SELECT 'still alive' AS s");
    assert.equal(await queryError(page), null);
    assert.deepEqual((await results(page)).rows, [['still alive']]);
  });

  it('stayed on the Larder origin without page errors', () => {
    assert.deepEqual(seen.foreign(larder.origin), []);
    assert.deepEqual(seen.pageErrors, []);
    assert.deepEqual(seen.failedResponses, [
      `404 GET ${larder.origin}/duckdb-ext/v1.4.3/wasm_eh/json.duckdb_extension.wasm`,
    ]);
  });
});
