// Fixtures for Larder's browser end-to-end tests.
//
// startLarder(): runs the real `larder serve` binary on a fresh temporary data dir and a free
// port, waits until it answers, and hands back its origin, the start-up login link, a way to
// issue more login links (`larder login-link --user NAME`) and stop() (SIGTERM, then SIGKILL).
// useLarder(): the same, wired into node:test before/after hooks.
// launchBrowser() / watch(): headless Chromium through playwright-core, and a recorder of the
// console errors, page errors and request URLs the tests assert on.
//
// Binary: $E2E_LARDER_BIN, else $CARGO_TARGET_DIR/debug/larder, else <repo>/target/debug/larder.
// Chromium: $E2E_CHROMIUM, else /usr/bin/chromium.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

const execFileP = promisify(execFile);

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.join(HERE, 'artifacts');
export const SAMPLE_CSV = path.resolve(HERE, '../../static/samples/pantry.csv');

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** The larder binary to test (see the header comment); fails clearly if it is missing. */
export function larderBinary() {
  const bin = process.env.E2E_LARDER_BIN
    ? path.resolve(REPO_ROOT, process.env.E2E_LARDER_BIN)
    : process.env.CARGO_TARGET_DIR
      ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR, 'debug', 'larder')
      : path.join(REPO_ROOT, 'target', 'debug', 'larder');
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(
      `no executable larder binary at ${bin}: build it (cargo build) or point E2E_LARDER_BIN ` +
        'or CARGO_TARGET_DIR at it',
    );
  }
  return bin;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// tracing colours its output even into a file; keep error messages readable.
const stripAnsi = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');

function tail(file, lines = 40) {
  try {
    return stripAnsi(fs.readFileSync(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch (e) {
    return `(no log: ${e.message})`;
  }
}

/**
 * Starts `larder serve` with a fresh data dir on 127.0.0.1:0. `options.env` adds environment
 * variables (configuration such as `LARDER_AUTH__OIDC`, and the secrets it names).
 * @returns {Promise<{origin: string, loginUrl: string, dataDir: string, tmpDir: string,
 *   logFile: string, loginLink: (user?: string) => Promise<string>, log: () => string,
 *   stop: () => Promise<{code: number|null, signal: string|null, killed: boolean}>}>}
 */
export async function startLarder(options = {}) {
  const bin = larderBinary();
  const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'larder-e2e-'));
  const dataDir = path.join(tmpDir, 'data');
  const logFile = path.join(tmpDir, 'server.log');
  // A clean environment: no LARDER_* (or anything else) from the caller leaks into the server.
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpDir,
    LARDER_DATA_DIR: dataDir,
    LARDER_HTTP__ADDR: '127.0.0.1:0',
    LARDER_S3__ADDR: '127.0.0.1:0',
    LARDER_HTTP__SHUTDOWN_GRACE: '3s',
    RUST_LOG: process.env.E2E_RUST_LOG ?? 'info',
    ...(options.env ?? {}),
  };
  const logFd = fs.openSync(logFile, 'a');
  const child = spawn(bin, ['serve'], { cwd: tmpDir, env, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd); // the child keeps its own copy
  let exited = null; // { code, signal } once the process is gone
  const exitPromise = once(child, 'exit').then(([code, signal]) => {
    exited = { code, signal };
    return exited;
  });
  child.on('error', () => {}); // surfaced through `exited` / the start timeout
  // Never leave a server behind, even if the test process dies before its `after` hook.
  const reap = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', reap);
  exitPromise.then(() => process.removeListener('exit', reap));

  const fail = async (why) => {
    if (!exited) {
      child.kill('SIGKILL');
      await exitPromise;
    }
    throw new Error(`${why}\n--- larder log (${logFile}) ---\n${tail(logFile)}\n---`);
  };

  // 1. The login-url file tells us the port (it ends with a newline once completely written).
  const deadline = Date.now() + START_TIMEOUT_MS;
  const loginFile = path.join(dataDir, 'login-url');
  let loginUrl = null;
  while (!loginUrl) {
    if (exited) return fail(`larder exited early (code ${exited.code}, signal ${exited.signal})`);
    if (Date.now() > deadline) return fail(`no ${loginFile} after ${START_TIMEOUT_MS} ms`);
    try {
      const text = await fsp.readFile(loginFile, 'utf8');
      const m = /^(http:\/\/127\.0\.0\.1:\d+)\/login\/[A-Za-z0-9_-]+\n$/.exec(text);
      if (m) loginUrl = text.trim();
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    if (!loginUrl) await sleep(50);
  }
  const mode = (await fsp.stat(loginFile)).mode & 0o777;
  if (mode !== 0o600) return fail(`${loginFile} has mode ${mode.toString(8)}, expected 600`);
  const origin = new URL(loginUrl).origin;

  // 2. Ready when /healthz says so.
  for (;;) {
    if (exited) return fail(`larder exited early (code ${exited.code}, signal ${exited.signal})`);
    if (Date.now() > deadline) return fail(`${origin}/healthz not ok after ${START_TIMEOUT_MS} ms`);
    try {
      const res = await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (res.status === 200 && JSON.parse(body).status === 'ok') break;
    } catch {
      /* not listening yet */
    }
    await sleep(50);
  }

  let stopping = null;
  return {
    origin,
    loginUrl,
    dataDir,
    tmpDir,
    logFile,
    log: () => stripAnsi(fs.readFileSync(logFile, 'utf8')),
    /** A fresh one-time login URL for `user`, from `larder login-link` (the control socket). */
    async loginLink(user) {
      const args = ['login-link', ...(user ? ['--user', user] : [])];
      let stdout;
      try {
        ({ stdout } = await execFileP(bin, args, { env, cwd: tmpDir, timeout: 10_000 }));
      } catch (e) {
        throw new Error(`larder ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
      }
      const url = stdout.trim();
      if (!url.startsWith(`${origin}/login/`)) {
        throw new Error(`larder ${args.join(' ')} printed ${JSON.stringify(stdout)}`);
      }
      return url;
    },
    /** Runs `larder ARGS...` against this node (its control socket); resolves to stdout. */
    async cli(...args) {
      try {
        const { stdout } = await execFileP(bin, args, { env, cwd: tmpDir, timeout: 10_000 });
        return stdout;
      } catch (e) {
        throw new Error(`larder ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
      }
    },
    /** SIGTERM, then SIGKILL if it has not exited after STOP_TIMEOUT_MS. Idempotent. */
    stop() {
      stopping ??= (async () => {
        if (exited) return { ...exited, killed: false };
        child.kill('SIGTERM');
        let timer;
        const timeout = new Promise((resolve) => {
          timer = setTimeout(resolve, STOP_TIMEOUT_MS, null);
        });
        let result = await Promise.race([exitPromise, timeout]);
        clearTimeout(timer);
        if (result) return { ...result, killed: false };
        child.kill('SIGKILL');
        result = await exitPromise;
        return { ...result, killed: true };
      })();
      return stopping;
    },
  };
}

/**
 * Starts Larder before the file's tests and stops it after them. The returned object is filled
 * in by the `before` hook. A server that does not stop cleanly on SIGTERM fails the file.
 */
export function useLarder() {
  const handle = {};
  before(async () => {
    Object.assign(handle, await startLarder());
  });
  after(async () => {
    if (!handle.stop) return;
    const { code, signal, killed } = await handle.stop();
    const clean = !killed && code === 0 && /stopped cleanly/.test(handle.log());
    if (!clean) {
      throw new Error(
        `larder did not stop cleanly on SIGTERM (code ${code}, signal ${signal}, ` +
          `SIGKILLed: ${killed})\n${tail(handle.logFile)}`,
      );
    }
    if (!process.env.E2E_KEEP_TMP) await fsp.rm(handle.tmpDir, { recursive: true, force: true });
  });
  return handle;
}

/** Headless Chromium. Playwright gives every launch a fresh, temporary user-data-dir. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Records what a browser context does: every request URL (pages and their workers), console
 * messages of type "error" (pages and workers) and uncaught page errors.
 */
export function watch(context) {
  const seen = { requests: [], failedResponses: [], aborted: [], consoleErrors: [], pageErrors: [] };
  const onPage = (page) => {
    page.on('console', (m) => {
      // For "Failed to load resource" the location is the resource, otherwise the script.
      if (m.type() === 'error') seen.consoleErrors.push(`${m.location().url || page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => seen.pageErrors.push(`${page.url()}: ${e.stack ?? e}`));
    page.on('worker', (w) =>
      w.on('console', (m) => {
        if (m.type() === 'error') seen.consoleErrors.push(`worker ${w.url()}: ${m.text()}`);
      }),
    );
  };
  context.pages().forEach(onPage);
  context.on('page', onPage);
  context.on('request', (r) => seen.requests.push(r.url()));
  context.on('response', (r) => {
    if (r.status() >= 400) seen.failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  context.on('requestfailed', (r) => {
    const line = `failed ${r.method()} ${r.url()}: ${r.failure()?.errorText}`;
    // A request cut off because the page navigated away (the island's catalog fetches, say)
    // is the browser's doing, not a failure of the server.
    if (r.failure()?.errorText === 'net::ERR_ABORTED') seen.aborted.push(line);
    else seen.failedResponses.push(line);
  });
  return {
    ...seen,
    /** Request URLs that did not go to `origin`. */
    foreign(origin) {
      return seen.requests.filter((u) => new URL(u).origin !== origin);
    },
    count(re) {
      return seen.requests.filter((u) => re.test(new URL(u).pathname)).length;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The query page.

/** Waits until the island reports DuckDB ready; returns the status text. Fails on "failed". */
export async function duckdbReady(page, timeout = 60_000) {
  const handle = await page.waitForFunction(
    () => {
      const s = document.querySelector('#duckdb-status');
      return s && ['ready', 'failed'].includes(s.dataset.state) ? [s.dataset.state, s.textContent] : null;
    },
    null,
    { timeout },
  );
  const [state, text] = await handle.jsonValue();
  if (state !== 'ready') throw new Error(`DuckDB did not start: ${text}`);
  return text;
}

/**
 * Types `sql` into the editor, clicks Run and waits for the outcome (a results table or an
 * error: either way the island replaces the contents of #query-results, removing our marker).
 */
export async function runSql(page, sql) {
  await page.waitForFunction(() => !document.querySelector('#run-query').disabled);
  await page.fill('#sql-editor', sql);
  await page.evaluate(() => {
    const marker = document.createElement('i');
    marker.id = 'e2e-pending';
    document.querySelector('#query-results').append(marker);
  });
  await page.click('#run-query');
  await page.waitForFunction(
    () => !document.querySelector('#e2e-pending') && !document.querySelector('#run-query').disabled,
    null,
    { timeout: 30_000 },
  );
}

/** The results table: column names, column types, body cells (text), summary line. */
export async function results(page) {
  return page.evaluate(() => {
    const root = document.querySelector('#query-results');
    const table = root.querySelector('table');
    return {
      present: !!table,
      names: [...root.querySelectorAll('thead th .col-name')].map((e) => e.textContent),
      types: [...root.querySelectorAll('thead th .col-type')].map((e) => e.textContent),
      rows: [...root.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent)),
      summary: root.querySelector('.results-summary')?.textContent ?? null,
    };
  });
}

/** The text of #query-error, or null while it is hidden. */
export async function queryError(page) {
  return page.evaluate(() => {
    const e = document.querySelector('#query-error');
    return e.hidden ? null : e.textContent;
  });
}

/** Saves the editor's SQL under `name` through the sidebar form; returns the saved query's id. */
export async function saveQuery(page, name) {
  await page.fill('#save-form input[name=name]', name);
  const saved = page.waitForResponse(
    (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/queries',
  );
  await page.click('#save-form button[type=submit]');
  const res = await saved;
  if (res.status() !== 200) throw new Error(`saving "${name}": HTTP ${res.status()} ${await res.text()}`);
  const item = savedItem(page, name);
  await item.waitFor();
  return item.getAttribute('data-saved-query');
}

/** The saved-queries sidebar entry whose link reads exactly `name`. */
export function savedItem(page, name) {
  return page.locator('#saved-queries li[data-saved-query]', {
    has: page.getByRole('link', { name, exact: true }),
  });
}
