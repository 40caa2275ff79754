// Connecting an app (as an MCP client does) in a real browser: the app registers itself, sends
// the person to /authorize, the person signs in (the local link) and lands back on the consent
// page, presses Allow, and the browser is sent on to the app's loopback callback, which the
// page's CSP must allow as the form's target. The app's tokens work on the API until the person
// disconnects it in Settings → Connected apps.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ARTIFACTS, launchBrowser, useLarder, watch } from './larder.mjs';

/** The app's loopback callback: records what it receives. */
async function startCallback() {
  const received = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/callback') received.push(url); // not the browser's /favicon.ico
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>App</title><p id="app-done">You can close this window.</p>');
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${server.address().port}/callback`;
  return { url, received, stop: () => new Promise((resolve) => server.close(resolve)) };
}

const b64url = (buf) => buf.toString('base64url');

describe('oauth: connecting an app', { timeout: 120_000 }, () => {
  const larder = useLarder();
  let callback;
  let browser;
  let context;
  let page;
  let seen;
  let client;
  let tokens;
  const verifier = b64url(crypto.randomBytes(48));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  const state = b64url(crypto.randomBytes(16));

  before(async () => {
    callback = await startCallback();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    seen = watch(context);
    page = await context.newPage();
    page.on('dialog', (d) => d.accept()); // hx-confirm
  });

  after(async () => {
    await browser?.close();
    await callback?.stop();
  });

  async function screenshot(name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
  }

  it('registers, sends the person through sign-in and consent, and gets a code back', async () => {
    const reg = await fetch(`${larder.origin}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'E2E Assistant', redirect_uris: [callback.url] }),
    });
    assert.equal(reg.status, 201);
    client = await reg.json();

    const authorize = new URL(`${larder.origin}/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: callback.url,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource: `${larder.origin}/api`,
      state,
    })) {
      authorize.searchParams.set(k, v);
    }
    // Not signed in yet: the landing page, which explains how to sign in.
    await page.goto(authorize.href);
    assert.equal(new URL(page.url()).pathname, '/');
    assert.match(await page.textContent('#connecting'), /^E2E Assistant asks to connect to your Larder\./);
    await screenshot('oauth-sign-in-first.png');
    // Signing in with the link brings the person back to the consent page.
    await page.goto(larder.loginUrl);
    await page.locator('#confirm-login').click();
    await page.locator('#consent-client').waitFor();
    assert.equal(new URL(page.url()).pathname, '/authorize');
    assert.equal(await page.locator('#consent-client').textContent(), 'E2E Assistant');
    assert.equal(await page.locator('#consent-user').textContent(), 'owner');
    assert.equal(await page.locator('#consent-destination').textContent(), new URL(callback.url).origin);
    await screenshot('oauth-consent.png');

    await page.locator('#consent-allow').click();
    await page.locator('#app-done').waitFor();
    assert.equal(callback.received.length, 1);
    const got = callback.received[0].searchParams;
    assert.equal(got.get('state'), state);
    assert.equal(got.get('iss'), larder.origin);
    assert.ok(got.get('code'), 'a code');

    const res = await fetch(`${larder.origin}/oauth/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: got.get('code'),
        redirect_uri: callback.url,
        client_id: client.client_id,
        code_verifier: verifier,
        resource: `${larder.origin}/api`,
      }),
    });
    assert.equal(res.status, 200);
    tokens = await res.json();
    const me = await fetch(`${larder.origin}/api/me`, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(me.status, 200);
    const body = await me.json();
    assert.equal(body.name, 'owner');
    assert.equal(body.auth, 'oauth');
  });

  it('lists the app in Settings and disconnecting it ends its access', async () => {
    await page.goto(`${larder.origin}/settings`);
    const row = page.locator('#connections tr[data-connection="E2E Assistant"]');
    await row.waitFor();
    await row.scrollIntoViewIfNeeded();
    await screenshot('oauth-connected-apps.png');
    await row.locator('[data-action="disconnect"]').click();
    await page.locator('#no-connections').waitFor();
    const me = await fetch(`${larder.origin}/api/me`, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(me.status, 401);
    const refresh = await fetch(`${larder.origin}/oauth/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: client.client_id }),
    });
    assert.equal(refresh.status, 400);
    assert.equal((await refresh.json()).error, 'invalid_grant');
  });

  it('broke no CSP rule and logged no errors', () => {
    assert.deepEqual(seen.consoleErrors, []);
    assert.deepEqual(seen.pageErrors, []);
    assert.deepEqual(seen.failedResponses, []);
  });
});
