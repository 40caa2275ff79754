// Sign-in with OpenID Connect, end to end: a real OpenID Provider process (npm `oidc-provider`,
// support/oidc-op.mjs) on loopback, the real larder binary configured with it, headless
// Chromium clicking through the provider's login and consent pages.
//
// Covers: an address on the allowlist signs up and lands in its own empty warehouse; one that is
// not is refused and nothing is created; an existing user still signs in after leaving the
// allowlist; local login works alongside; a callback replayed (even with its browser cookie)
// is refused; a callback from another browser's sign-in (login CSRF: the state does not match)
// is refused and signs nobody in.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ARTIFACTS, HERE, launchBrowser, startLarder } from './larder.mjs';

async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

const CLIENT_ID = 'larder-e2e';
// Not a real secret: the test provider's client secret, handed to Larder through the environment.
const CLIENT_SECRET = `e2e-${Math.random().toString(36).slice(2)}`;

// The exact refusals (src/edge/oidc.rs).
const NOT_STARTED_HERE =
  "This sign-in could not be verified: it did not start in this browser. Start again from Larder's sign-in page.";
const USED_OR_EXPIRED =
  "This sign-in could not be verified: it was already used or has expired. Start again from Larder's sign-in page.";
const STATE_MISMATCH =
  "This sign-in could not be verified: its state does not match the sign-in this browser started. Start again from Larder's sign-in page.";
const notOnAllowlist = (email) =>
  `You cannot sign up here: ${email} is not on this node's allowlist for new accounts: ask its administrator to add it.`;

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts support/oidc-op.mjs; resolves once it prints `ready`. */
async function startProvider(port, redirectUri) {
  const child = spawn(process.execPath, [path.join(HERE, 'support', 'oidc-op.mjs')], {
    env: {
      PATH: process.env.PATH,
      OP_PORT: String(port),
      OP_CLIENT_ID: CLIENT_ID,
      OP_CLIENT_SECRET: CLIENT_SECRET,
      OP_REDIRECT_URIS: redirectUri,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (d) => (output += d));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the provider did not start:\n${output}`)), 20_000);
    child.stdout.on('data', (d) => {
      output += d;
      if (/^ready /m.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`the provider exited (${code}):\n${output}`)));
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return { child, output: () => output };
}

let larder;
let provider;
let browser;
let opOrigin;

before(async () => {
  const opPort = await freePort();
  opOrigin = `http://127.0.0.1:${opPort}`;
  larder = await startLarder({
    env: {
      LARDER_AUTH__OIDC: `[{name="test", label="Test OP", issuer="${opOrigin}", client_id="${CLIENT_ID}", client_secret_env="E2E_OP_SECRET"}]`,
      E2E_OP_SECRET: CLIENT_SECRET,
    },
  });
  provider = await startProvider(opPort, `${larder.origin}/auth/oidc/test/callback`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  provider?.child.kill('SIGTERM');
  const stopped = await larder?.stop();
  assert.equal(stopped?.killed, false, 'larder stops cleanly');
  assert.ok(!larder.log().includes(CLIENT_SECRET), 'the client secret is never logged');
});

const CALLBACK = '/auth/oidc/test/callback';
const isCallback = (u) => u.origin === larder.origin && u.pathname === CALLBACK;

/**
 * In `page`: from Larder's landing page, "Sign in with Test OP", then the provider's login form
 * (as `login`) and consent page. Resolves with the browser-binding cookie Larder set and the
 * callback URL the provider sent the browser to, once the browser asks for it.
 * With `hold`, the browser never gets there: the consent is sent outside the page, the
 * provider's redirects are followed by hand up to the callback URL, and the page's navigation
 * is aborted (an attacker keeping a code + state for themselves). (Playwright cannot route
 * requests that are redirects, so the callback itself cannot be intercepted.)
 */
async function signIn(page, login, { hold = false } = {}) {
  const context = page.context();
  await page.goto(`${larder.origin}/`);
  await page.click('a[data-provider="test"]');
  await page.waitForURL((u) => u.origin === opOrigin);
  const binding = (await context.cookies(`${larder.origin}/auth/oidc`)).find((c) => c.name === 'larder_oidc');
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'anything');
  await page.click('button[type="submit"]');
  await page.waitForSelector('button:has-text("Continue")');
  if (hold) {
    let held;
    const done = new Promise((resolve) => (held = resolve));
    await page.route(`${opOrigin}/interaction/**`, async (route) => {
      let location = (await route.fetch({ maxRedirects: 0 })).headers().location;
      while (location && !isCallback(new URL(location, opOrigin))) {
        const next = await context.request.get(new URL(location, opOrigin).href, { maxRedirects: 0 });
        location = next.headers().location;
      }
      await route.abort();
      held(new URL(location, opOrigin).href);
    });
    await page.click('button:has-text("Continue")');
    return { binding, callbackUrl: await done };
  }
  const back = page.waitForRequest((r) => isCallback(new URL(r.url())));
  await page.click('button:has-text("Continue")');
  return { binding, callbackUrl: (await back).url() };
}

/** After `signIn`: waits for the refusal page the callback answered with. */
async function refusal(page) {
  await page.waitForURL(isCallback);
  return outcome(page);
}

/** What a page on Larder says: the error message, or who is signed in. */
async function outcome(page) {
  await page.waitForLoadState('domcontentloaded');
  return page.evaluate(() => ({
    path: location.pathname,
    error: document.querySelector('p.error')?.textContent ?? null,
    user: document.querySelector('#signed-in-as')?.textContent ?? null,
  }));
}

async function me(context) {
  const res = await context.request.get(`${larder.origin}/api/me`);
  return res.status() === 200 ? res.json() : null;
}

test('the landing page offers the provider next to the local login', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${larder.origin}/`);
  assert.equal(await page.textContent('a[data-provider="test"]'), 'Sign in with Test OP');
  assert.match(await page.textContent('main'), /larder login-link/);
  await screenshot(page, 'oidc-landing.png');
  // Local login still works alongside.
  await page.goto(larder.loginUrl);
  await page.click('button[type="submit"]');
  await page.waitForURL(`${larder.origin}/query`);
  assert.equal((await outcome(page)).user, 'owner');
  await context.close();
});

test('an admin manages the allowlist on its page', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(await larder.loginLink('owner'));
  await page.click('button[type="submit"]');
  await page.waitForURL(`${larder.origin}/query`);
  await page.click('nav a[href="/admin/allowlist"]');
  await page.waitForSelector('#allowlist-empty');
  await page.fill('#allow-pattern', 'Someone@Example.org');
  await page.click('.allowlist-form button[type="submit"]');
  await page.waitForSelector('tr[data-pattern="someone@example.org"]');
  assert.equal(
    await page.textContent('#allowlist-message'),
    'Added someone@example.org: matching addresses may now sign up.',
  );
  assert.equal(await larder.cli('allow', 'list'), 'someone@example.org\n');
  // A bad pattern: the reason in the flash area, nothing added.
  await page.fill('#allow-pattern', 'example.org');
  await page.click('.allowlist-form button[type="submit"]');
  await page.waitForSelector('#flash .flash.error');
  assert.match(await page.textContent('#flash'), /"example\.org" is not an allowlist pattern: an address needs an @/);
  page.once('dialog', (d) => d.accept());
  await page.click('tr[data-pattern="someone@example.org"] button[data-action="remove"]');
  await page.waitForSelector('#allowlist-empty');
  assert.equal(await larder.cli('allow', 'list'), '');
  await context.close();
});

let alice; // { id } once signed up

test('an address on the allowlist signs up, into its own empty warehouse; its callback cannot be replayed', async () => {
  assert.equal(await larder.cli('allow', 'add', '@example.com'), 'added @example.com to the allowlist\n');
  const context = await browser.newContext();
  const page = await context.newPage();
  const { callbackUrl, binding } = await signIn(page, 'alice');
  await page.waitForURL(`${larder.origin}/query`);
  assert.deepEqual(await outcome(page), { path: '/query', error: null, user: 'alice@example.com' });
  alice = await me(context);
  assert.equal(alice.name, 'alice@example.com');
  const catalog = await (await context.request.get(`${larder.origin}/api/catalog`)).json();
  assert.deepEqual(catalog.tables, [], 'a new, empty warehouse');
  const saved = await (await context.request.get(`${larder.origin}/api/saved-queries`)).json();
  assert.deepEqual(saved, []);
  // The browser-binding cookie was spent and cleared.
  assert.equal((await context.cookies(larder.origin + '/auth/oidc')).find((c) => c.name === 'larder_oidc'), undefined);

  // Replaying the callback URL (same code, same state) is refused...
  let res = await page.goto(callbackUrl);
  assert.equal(res.status(), 403);
  assert.equal((await outcome(page)).error, NOT_STARTED_HERE);
  // ...even with the browser's original binding cookie put back: the pending sign-in (its
  // state, PKCE verifier and nonce) was burned, durably, by the first callback. This is what
  // refuses nonce replay: an ID token is only checked against the nonce of a pending sign-in,
  // and each pending sign-in is used once, so a token minted for that nonce (replayed with this
  // code or any other) can never be accepted again.
  assert.ok(binding, 'the sign-in set its binding cookie');
  await context.addCookies([{ ...binding }]);
  res = await page.goto(callbackUrl);
  assert.equal(res.status(), 403);
  assert.equal((await outcome(page)).error, USED_OR_EXPIRED);
  assert.equal((await me(context))?.id, alice.id, 'still the same session, nothing new');
  await context.close();
});

test('an address not on the allowlist is refused and nothing is created', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'mallory@evil.test');
  const seen = await refusal(page);
  assert.equal(seen.path, '/auth/oidc/test/callback');
  assert.equal(seen.error, notOnAllowlist('mallory@evil.test'));
  await screenshot(page, 'oidc-refused.png');
  assert.equal(seen.user, null);
  assert.equal(await me(context), null, 'no session');
  await context.close();

  // Nobody was created: once allowed, the same person signs up under the plain name (a user
  // left behind by the refusal would have taken it, making this mallory@evil.test-2).
  await larder.cli('allow', 'add', 'mallory@evil.test');
  const again = await browser.newContext();
  const page2 = await again.newPage();
  await signIn(page2, 'mallory@evil.test');
  await page2.waitForURL(`${larder.origin}/query`);
  assert.equal((await outcome(page2)).user, 'mallory@evil.test');
  assert.match(larder.log(), /OpenID sign-up refused.*mallory@evil\.test is not on this node's allowlist/);
  await again.close();
  await larder.cli('allow', 'remove', 'mallory@evil.test');
});

test('an existing user still signs in after leaving the allowlist', async () => {
  assert.ok(alice, 'alice signed up in an earlier test');
  assert.equal(await larder.cli('allow', 'remove', '@example.com'), 'removed @example.com from the allowlist\n');
  assert.equal(await larder.cli('allow', 'list'), '');
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'alice');
  await page.waitForURL(`${larder.origin}/query`);
  assert.equal((await me(context)).id, alice.id, 'the same user as before');
  // A new address of the same domain, though, is now refused.
  const other = await browser.newContext();
  const page2 = await other.newPage();
  await signIn(page2, 'bob');
  assert.equal((await refusal(page2)).error, notOnAllowlist('bob@example.com'));
  await other.close();
  await context.close();
});

test("a callback from another browser's sign-in (login CSRF) is refused and signs nobody in", async () => {
  await larder.cli('allow', 'add', 'attacker@example.com');
  // The attacker completes a sign-in at the provider in their own browser but keeps the
  // callback URL (code + state) instead of following it.
  const attacker = await browser.newContext();
  const attackerPage = await attacker.newPage();
  const { callbackUrl: planted } = await signIn(attackerPage, 'attacker', { hold: true });
  const query = new URL(planted).searchParams;
  assert.ok(query.get('code') && query.get('state'), planted);

  // The victim has started their own sign-in (so their browser holds a binding cookie) and is
  // made to open the attacker's callback URL.
  const victim = await browser.newContext();
  const victimPage = await victim.newPage();
  await victimPage.goto(`${larder.origin}/`);
  await victimPage.click('a[data-provider="test"]');
  await victimPage.waitForURL((u) => u.origin === opOrigin);
  let res = await victimPage.goto(planted);
  assert.equal(res.status(), 403);
  assert.equal((await outcome(victimPage)).error, STATE_MISMATCH);
  assert.equal(await me(victim), null, 'the victim is not signed in as the attacker');
  // A browser that started nothing at all is refused too.
  const bystander = await browser.newContext();
  const bystanderPage = await bystander.newPage();
  res = await bystanderPage.goto(planted);
  assert.equal(res.status(), 403);
  assert.equal((await outcome(bystanderPage)).error, NOT_STARTED_HERE);
  assert.equal(await me(bystander), null);

  // The refusals created nothing: the attacker's own browser can still finish (its pending
  // sign-in is intact) and gets the plain name.
  await attackerPage.goto(planted);
  await attackerPage.waitForURL(`${larder.origin}/query`);
  assert.equal((await outcome(attackerPage)).user, 'attacker@example.com');
  await Promise.all([attacker.close(), victim.close(), bystander.close()]);
});

test("an app's authorization request survives an OpenID sign-in and reaches the consent page", async () => {
  await larder.cli('allow', 'add', 'carol@example.com');
  // The app (an MCP client, say) registers and sends the person's browser to /authorize.
  const reg = await fetch(`${larder.origin}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'OIDC-path app', redirect_uris: ['http://127.0.0.1:9/callback'] }),
  });
  assert.equal(reg.status, 201);
  const client = await reg.json();
  const challenge = crypto.createHash('sha256').update('v'.repeat(50)).digest('base64url');
  const authorize = new URL(`${larder.origin}/authorize`);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: 'http://127.0.0.1:9/callback',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: 'app-state',
  }).toString();

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(authorize.href);
  assert.equal(new URL(page.url()).pathname, '/', 'not signed in: the sign-in page');
  // signIn starts from the landing page, which is where /authorize sent the browser.
  await signIn(page, 'carol');
  await page.waitForURL((u) => u.pathname === '/authorize');
  assert.equal(page.url(), authorize.href, 'back at the very same authorization request');
  assert.equal(await page.textContent('#consent-client'), 'OIDC-path app');
  assert.equal(await page.textContent('#consent-user'), 'carol@example.com');
  await context.close();
  await larder.cli('allow', 'remove', 'carol@example.com');
});
