// Settings → Storage backends, end to end: the real server, headless Chromium, and a real S3
// server (moto_server, from PyPI `moto[server]`) for the backend the user adds.
//
// moto runs with IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT): the first three calls create
// an IAM user, its policy and its access key without credentials; everything after that must be
// signed with that key, so a wrong secret really fails. One signed-in tab then walks through
// the section: the built-in `local` backend, add an s3 backend, Test it, edit it leaving the
// secret blank, a wrong secret, rename, delete, and bad input that must change nothing. Every
// HTML answer is kept and checked for the secret, which must never come back.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { ARTIFACTS, launchBrowser, useLarder, watch } from './larder.mjs';

const execFileP = promisify(execFile);
const CANCELLED_SECRET = 'typed-then-cancelled';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// moto_server

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// Creates the IAM user (s3:* allowed) and its key, then the bucket, signed with that key.
const MOTO_SETUP = `
import json, sys, boto3
url, bucket = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="larder-e2e")
iam.put_user_policy(UserName="larder-e2e", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="larder-e2e")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(json.dumps({"accessKeyId": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
`;

/** Starts moto_server on a free port with IAM enforced; returns its URL, a key and stop(). */
async function startMoto(bucket) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    env: { ...process.env, INITIAL_NO_AUTH_ACTION_COUNT: '3' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  const spawnError = new Promise((resolve) => child.once('error', resolve));
  const reap = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', reap);
  const stop = async () => {
    process.removeListener('exit', reap);
    if (exited) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([gone, sleep(5000).then(() => child.kill('SIGKILL'))]);
  };

  const deadline = Date.now() + 20_000;
  for (;;) {
    const failed = await Promise.race([spawnError, sleep(0).then(() => null)]);
    if (failed?.code === 'ENOENT') {
      throw new Error("moto_server is not installed: pip install 'moto[server]'");
    }
    if (exited) throw new Error(`moto_server exited (code ${exited.code})\n${stderr}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto_server did not answer on ${url}\n${stderr}`);
    }
    try {
      if ((await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(1000) })).ok) break;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  try {
    const { stdout } = await execFileP('python3', ['-c', MOTO_SETUP, url, bucket], { timeout: 30_000 });
    return { url, ...JSON.parse(stdout), stop };
  } catch (e) {
    await stop();
    throw new Error(`setting up moto failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

// ---------------------------------------------------------------------------------------------

describe('settings: storage backends', { timeout: 120_000 }, () => {
  const larder = useLarder();
  const bucket = 'larder-e2e';
  let moto;
  let browser;
  let context;
  let page;
  let seen;
  const htmlBodies = []; // promises of [url, body] for every HTML answer the tab received
  const expectedFailures = []; // `${status} ${method} ${url}` of the errors provoked on purpose

  before(async () => {
    moto = await startMoto(bucket);
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    seen = watch(context);
    context.on('response', (r) => {
      if ((r.headers()['content-type'] ?? '').startsWith('text/html')) {
        htmlBodies.push(r.text().then((body) => [r.url(), body], () => [r.url(), '']));
      }
    });
    page = await context.newPage();
    page.on('dialog', (d) => d.accept()); // hx-confirm
  });

  after(async () => {
    await browser?.close();
    await moto?.stop();
  });

  const row = (name) => page.locator(`#backend-list li.backend[data-backend="${name}"]`);
  const flash = () => page.locator('#flash .flash');

  /** A screenshot of what a person sees with the section scrolled up to just under the flash. */
  async function screenshot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.evaluate(() => {
      const top = document.querySelector('#storage-backends').getBoundingClientRect().top + window.scrollY;
      window.scrollTo(0, top - 130);
    });
    // caret: 'initial': hiding the caret leaves style="" on inputs, which htmx later settles
    // onto swapped-in inputs, which the CSP (rightly) reports.
    await page.screenshot({ path: path.join(ARTIFACTS, name), caret: 'initial' });
  }

  /**
   * Clicks Test in the row and waits for its outcome: { result: 'ok'|'failed', text (one line),
   * error (the failure's detail) }.
   */
  async function test(name) {
    const r = row(name);
    const answered = page.waitForResponse(
      (res) => res.request().method() === 'POST' && /\/test$/.test(new URL(res.url()).pathname),
    );
    await r.locator('[data-action="test"]').click();
    assert.equal((await answered).status(), 200);
    const outcome = r.locator('[data-test-result]');
    await outcome.waitFor();
    await page.waitForFunction((n) => !document.querySelector(`#test-${n}`).classList.contains('htmx-request'), name);
    return {
      result: await outcome.getAttribute('data-test-result'),
      text: (await outcome.textContent()).replace(/\s+/g, ' ').trim(),
      error: (await outcome.locator('.error').count()) ? await outcome.locator('.error').textContent() : null,
    };
  }

  /** Submits a form (the add form or a row's edit form) and waits for the server's answer. */
  async function submit(form, method) {
    const answered = page.waitForResponse(
      (res) => res.request().method() === method && new URL(res.url()).pathname.startsWith('/settings/backends'),
    );
    await form.locator('button[type=submit]').click();
    const res = await answered;
    // Let htmx finish the swap (it settles after a short delay).
    await page.waitForFunction(() => !document.querySelector('.htmx-request, .htmx-settling, .htmx-swapping'));
    return res;
  }

  async function edit(name) {
    await row(name).locator('[data-action="edit"]').click();
    const form = page.locator(`#backend-list li.editing[data-backend="${name}"] form`);
    await form.waitFor();
    return form;
  }

  async function apiBackends() {
    const res = await context.request.get(`${larder.origin}/api/storage/backends`);
    assert.equal(res.status(), 200);
    return (await res.json()).map((b) => `${b.name}:${b.kind}:${b.provenance}`);
  }

  it('signs in, opens Settings and lists the built-in local backend', async () => {
    await page.goto(larder.loginUrl);
    await Promise.all([page.waitForURL(`${larder.origin}/query`), page.click('#confirm-login')]);
    await page.click('nav a[href="/settings"]');
    await page.waitForURL(`${larder.origin}/settings`);
    await row('local').waitFor();

    const local = row('local');
    assert.equal(await local.getAttribute('data-provenance'), 'builtin');
    assert.equal(await local.locator('[data-kind]').textContent(), 'local');
    assert.equal(await local.locator('[data-origin]').textContent(), 'built-in');
    assert.equal(await local.locator('[data-uri]').textContent(), 'store://local/');
    // Read-only: Test only.
    assert.equal(await local.locator('[data-action="edit"], [data-action="delete"]').count(), 0);
    assert.equal(await local.locator('[data-action="test"]').count(), 1);
    assert.equal(await page.locator('#no-own-backends').count(), 1);
    // The add form's defaults.
    assert.equal(await page.inputValue('#add-region'), 'us-east-1');
    assert.equal(await page.isChecked('#add-backend input[name=path_style]'), true);
    await screenshot('settings-backends-empty.png');
  });

  it('tests the local backend with a real round trip', async () => {
    const { result, text } = await test('local');
    assert.equal(result, 'ok', text);
    assert.match(text, /^OK Wrote, read back and deleted a probe object in \d+ ms\.$/);
  });

  it('adds an s3 backend on the S3 server', async () => {
    await page.fill('#add-name', 'e2e-moto');
    await page.fill('#add-endpoint', moto.url);
    await page.fill('#add-bucket', bucket);
    await page.fill('#add-prefix', '/larder/e2e/');
    await page.fill('#add-access_key_id', moto.accessKeyId);
    await page.fill('#add-secret_access_key', moto.secret);
    const res = await submit(page.locator('#add-backend'), 'POST');
    assert.equal(res.status(), 200);

    assert.equal(await flash().textContent(), 'Added “e2e-moto”. Press Test to check that it works.');
    const r = row('e2e-moto');
    assert.equal(await r.getAttribute('data-provenance'), 'user');
    assert.equal(await r.locator('[data-kind]').textContent(), 's3');
    assert.equal(await r.locator('[data-origin]').textContent(), 'yours');
    assert.equal(await r.locator('[data-field="endpoint"]').textContent(), moto.url);
    assert.equal(await r.locator('[data-field="bucket"]').textContent(), bucket);
    assert.equal(await r.locator('[data-field="prefix"]').textContent(), 'larder/e2e');
    assert.equal(await r.locator('[data-field="region"]').textContent(), 'us-east-1');
    assert.equal(await r.locator('[data-uri]').textContent(), 'store://e2e-moto/');
    assert.equal(await page.locator('#no-own-backends').count(), 0);
    // The add form is fresh again, secret included.
    assert.equal(await page.inputValue('#add-name'), '');
    assert.equal(await page.inputValue('#add-secret_access_key'), '');
    assert.equal(await page.inputValue('#add-region'), 'us-east-1');

    assert.deepEqual(await apiBackends(), ['local:local:builtin', 'e2e-moto:s3:user']);
  });

  it('tests the s3 backend: ok', async () => {
    const { result, text } = await test('e2e-moto');
    assert.equal(result, 'ok', text);
    assert.match(text, /in \d+ ms\.$/);
    await screenshot('settings-backends-added.png');
  });

  it('edits it with the secret left blank: the secret is kept', async () => {
    const form = await edit('e2e-moto');
    const secret = form.locator('input[name=secret_access_key]');
    assert.equal(await secret.inputValue(), '');
    assert.equal(await secret.getAttribute('type'), 'password');
    assert.equal(await secret.getAttribute('placeholder'), '•••••• leave blank to keep');
    assert.equal(await secret.getAttribute('value'), '');
    assert.equal(await form.locator('input[name=name]').inputValue(), 'e2e-moto');
    assert.equal(await form.locator('input[name=endpoint]').inputValue(), moto.url);
    assert.equal(await form.locator('input[name=bucket]').inputValue(), bucket);
    assert.equal(await form.locator('input[name=access_key_id]').inputValue(), moto.accessKeyId);
    assert.equal(await form.locator('input[name=path_style]').isChecked(), true);
    await screenshot('settings-backends-edit.png');

    await form.locator('input[name=prefix]').fill('larder/edited');
    assert.equal((await submit(form, 'PUT')).status(), 200);
    assert.equal(await flash().textContent(), 'Saved “e2e-moto”.');
    assert.equal(await row('e2e-moto').locator('[data-field="prefix"]').textContent(), 'larder/edited');

    const { result, text } = await test('e2e-moto');
    assert.equal(result, 'ok', text);
  });

  it('cancels an edit without changing anything', async () => {
    const form = await edit('e2e-moto');
    await form.locator('input[name=bucket]').fill('something-else');
    // Cancel is a GET from inside the form: htmx must not put the form's fields in its URL.
    await form.locator('input[name=secret_access_key]').fill(CANCELLED_SECRET);
    await form.locator('[data-action="cancel"]').click();
    await row('e2e-moto').locator('[data-field="bucket"]').waitFor();
    assert.equal(await row('e2e-moto').locator('[data-field="bucket"]').textContent(), bucket);
    assert.deepEqual(seen.requests.filter((u) => u.includes(CANCELLED_SECRET)), []);
    assert.equal((await test('e2e-moto')).result, 'ok', 'the stored secret is unchanged');
  });

  it('never sends the secret to the browser', async () => {
    const bodies = await Promise.all(htmlBodies);
    assert.ok(bodies.length > 5, `HTML answers were recorded (${bodies.length})`);
    const forms = [
      moto.secret,
      moto.secret.replaceAll('/', '&#x2f;'),
      moto.secret.replaceAll('+', '&#43;'),
      encodeURIComponent(moto.secret),
      CANCELLED_SECRET,
      // the longest run of letters and digits, whatever escaping did to the rest
      moto.secret.match(/[A-Za-z0-9]+/g).sort((a, b) => b.length - a.length)[0],
    ];
    for (const [url, body] of bodies) {
      for (const f of forms) assert.ok(!body.includes(f), `${url} contains the secret`);
    }
    const html = await page.content();
    for (const f of forms) assert.ok(!html.includes(f), 'the page contains the secret');
    for (const u of seen.requests) assert.ok(!u.includes(encodeURIComponent(moto.secret)), `${u} carries the secret`);
  });

  it('shows a failed Test with a wrong secret, and works again with the right one', async () => {
    let form = await edit('e2e-moto');
    await form.locator('input[name=secret_access_key]').fill('not-the-secret-at-all');
    assert.equal((await submit(form, 'PUT')).status(), 200);
    let outcome = await test('e2e-moto');
    assert.equal(outcome.result, 'failed');
    assert.match(outcome.text, /^Failed after \d+ ms /);
    assert.match(outcome.error, /^Writing a probe object failed: .*SignatureDoesNotMatch/);
    await screenshot('settings-backends-test-failed.png');

    form = await edit('e2e-moto');
    await form.locator('input[name=secret_access_key]').fill(moto.secret);
    assert.equal((await submit(form, 'PUT')).status(), 200);
    outcome = await test('e2e-moto');
    assert.equal(outcome.result, 'ok', outcome.text);
  });

  it('renames it (the secret goes along)', async () => {
    const form = await edit('e2e-moto');
    await form.locator('input[name=name]').fill('e2e-renamed');
    assert.equal((await submit(form, 'PUT')).status(), 200);
    assert.equal(
      await flash().textContent(),
      'Renamed “e2e-moto” to “e2e-renamed”: its URI is now store://e2e-renamed/.',
    );
    assert.equal(await row('e2e-moto').count(), 0);
    assert.equal(await row('e2e-renamed').locator('[data-uri]').textContent(), 'store://e2e-renamed/');
    assert.equal(await row('e2e-renamed').locator('[data-field="prefix"]').textContent(), 'larder/edited');
    assert.deepEqual(await apiBackends(), ['local:local:builtin', 'e2e-renamed:s3:user']);
    const { result, text } = await test('e2e-renamed');
    assert.equal(result, 'ok', text);
  });

  it('refuses bad input with a message in #flash and changes nothing', async () => {
    const before = await apiBackends();
    const rows = await page.locator('#backend-list li.backend').count();
    const attempt = async (fields, status, message) => {
      await page.fill('#add-name', fields.name ?? 'e2e-bad');
      await page.fill('#add-endpoint', fields.endpoint ?? moto.url);
      await page.fill('#add-bucket', bucket);
      await page.fill('#add-access_key_id', moto.accessKeyId);
      await page.fill('#add-secret_access_key', 'irrelevant');
      const res = await submit(page.locator('#add-backend'), 'POST');
      assert.equal(res.status(), status);
      expectedFailures.push(`${status} POST ${larder.origin}/settings/backends`);
      const f = flash();
      assert.equal(await f.getAttribute('class'), 'flash error');
      assert.equal(await f.getAttribute('role'), 'alert');
      assert.match(await f.textContent(), message);
      assert.equal(await page.locator('#backend-list li.backend').count(), rows);
      assert.deepEqual(await apiBackends(), before);
      // What was typed stays in the form to be corrected.
      assert.equal(await page.inputValue('#add-endpoint'), fields.endpoint ?? moto.url);
    };
    await attempt({ endpoint: 'not a url' }, 422, /^The endpoint "not a url" is not a URL\.$/);
    await attempt({ endpoint: 'ftp://example.com' }, 422, /^The endpoint must be an http:\/\/ or https:\/\/ URL\.$/);
    await screenshot('settings-backends-bad-endpoint.png');
    await attempt({ name: 'Bad Name' }, 422, /is not a valid name/);
    await attempt({ name: 'local' }, 422, /"local" is the name of a built-in or shared backend/);
    await attempt({ name: 'e2e-renamed' }, 409, /already exists/);

    // A bad edit leaves the backend as it was.
    const form = await edit('e2e-renamed');
    await form.locator('input[name=endpoint]').fill('nope');
    const res = await submit(form, 'PUT');
    assert.equal(res.status(), 422);
    expectedFailures.push(`422 PUT ${res.url()}`);
    assert.match(await flash().textContent(), /is not a URL/);
    assert.equal(await form.locator('input[name=endpoint]').inputValue(), 'nope', 'the form stays open');
    await form.locator('[data-action="cancel"]').click();
    await row('e2e-renamed').locator('[data-field="endpoint"]').waitFor();
    assert.equal(await row('e2e-renamed').locator('[data-field="endpoint"]').textContent(), moto.url);
  });

  it('deletes it after confirming', async () => {
    const answered = page.waitForResponse((res) => res.request().method() === 'DELETE');
    await row('e2e-renamed').locator('[data-action="delete"]').click();
    assert.equal((await answered).status(), 200);
    await row('e2e-renamed').waitFor({ state: 'detached' });
    assert.equal(await flash().textContent(), 'Deleted “e2e-renamed”. Its objects are still in the bucket.');
    assert.equal(await page.locator('#no-own-backends').count(), 1);
    assert.deepEqual(await apiBackends(), ['local:local:builtin']);
  });

  it('creates an API token shown once, which works as a bearer until revoked', async () => {
    const tokens = page.locator('#api-tokens');
    await tokens.locator('#token-name').waitFor();
    await tokens.locator('#token-name').fill('e2e script');
    await tokens.locator('#token-expiry').selectOption('30');
    await tokens.locator('button[type=submit]').click();
    const secret = (await tokens.locator('[data-secret]').textContent()).trim();
    assert.match(secret, /^lpat_[A-Za-z0-9_-]{40,}$/);
    assert.equal(await tokens.locator('tr[data-token="e2e script"]').count(), 1);
    // From outside the browser: no cookie, no CSRF token.
    const me = await fetch(`${larder.origin}/api/me`, { headers: { Authorization: `Bearer ${secret}` } });
    assert.equal(me.status, 200);
    assert.equal((await me.json()).name, 'owner');
    // Shown once: reloading the section lists it without the secret.
    await page.reload();
    await tokens.locator('tr[data-token="e2e script"]').waitFor();
    assert.equal(await tokens.locator('[data-secret]').count(), 0);
    assert.ok(!(await page.content()).includes(secret));
    await tokens.locator('tr[data-token="e2e script"] [data-action="revoke"]').click();
    await tokens.locator('#no-tokens').waitFor();
    const after = await fetch(`${larder.origin}/api/me`, { headers: { Authorization: `Bearer ${secret}` } });
    assert.equal(after.status, 401);
    assert.match(after.headers.get('www-authenticate'), /^Bearer realm="larder", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/api", error="invalid_token"$/);
  });

  it('stayed on the Larder origin without console or page errors', () => {
    assert.ok(seen.requests.length > 10, 'requests were recorded');
    assert.deepEqual(seen.foreign(larder.origin), []);
    assert.deepEqual(seen.pageErrors, []);
    assert.deepEqual(seen.failedResponses, expectedFailures);
    // The browser reports each provoked error response, and nothing else.
    const provoked = new Set(expectedFailures.map((f) => f.split(' ')[2]));
    const other = seen.consoleErrors.filter((e) => {
      const m = /^(\S+): Failed to load resource: the server responded with a status of (409|422)/.exec(e);
      return !(m && provoked.has(m[1]));
    });
    assert.deepEqual(other, []);
  });
});
