// Larder's authorization server as the official MCP TypeScript SDK sees it (the SDK Claude
// Desktop and most MCP clients are built on): its `auth()` discovers from the 401's
// `resource_metadata`, registers, sends the person to /authorize (here a signed-in fetch that
// reads the consent page and presses Allow), exchanges the code and refreshes, with no
// configuration but the URL it was given. (tests/mcp does the same with the Python SDK.)

import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';

import { useLarder } from './larder.mjs';

const REDIRECT = 'http://127.0.0.1:38123/callback';

/** A person signed in with the login link: the session cookie, for plain fetches. */
async function signIn(loginUrl, origin) {
  const page = await fetch(loginUrl, { redirect: 'manual' });
  const html = await page.text();
  const field = (name) => new RegExp(`name="${name}" value="([^"]+)"`).exec(html)[1];
  const nonceCookie = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const res = await fetch(`${origin}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: nonceCookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: field('token'), nonce: field('nonce') }),
  });
  assert.equal(res.status, 303);
  const session = res.headers.getSetCookie().find((c) => c.startsWith('larder_session='));
  assert.ok(session, 'a session cookie');
  return session.split(';')[0];
}

/** The OAuthClientProvider an MCP client implements, keeping everything in memory. */
function memoryProvider(onRedirect) {
  const saved = {};
  return {
    saved,
    get redirectUrl() {
      return REDIRECT;
    },
    get clientMetadata() {
      return {
        client_name: 'TS SDK client',
        redirect_uris: [REDIRECT],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      };
    },
    state: () => 'ts-sdk-state',
    clientInformation: () => saved.client,
    saveClientInformation: (c) => {
      saved.client = c;
    },
    tokens: () => saved.tokens,
    saveTokens: (t) => {
      saved.tokens = t;
    },
    redirectToAuthorization: (url) => onRedirect(url),
    saveCodeVerifier: (v) => {
      saved.verifier = v;
    },
    codeVerifier: () => saved.verifier,
    saveDiscoveryState: (s) => {
      saved.discovery = s;
    },
    discoveryState: () => saved.discovery,
  };
}

describe('the MCP TypeScript SDK against Larder', { timeout: 60_000 }, () => {
  const larder = useLarder();
  let cookie;

  before(async () => {
    cookie = await signIn(larder.loginUrl, larder.origin);
  });

  it('discovers, registers, is authorized, exchanges the code and refreshes', async () => {
    const serverUrl = `${larder.origin}/api/me`;
    const unauthorized = await fetch(serverUrl);
    assert.equal(unauthorized.status, 401);
    const { resourceMetadataUrl } = extractWWWAuthenticateParams(unauthorized);
    assert.equal(String(resourceMetadataUrl), `${larder.origin}/.well-known/oauth-protected-resource/api`);

    let authorizationUrl;
    const provider = memoryProvider((url) => {
      authorizationUrl = new URL(url);
    });
    assert.equal(await auth(provider, { serverUrl, resourceMetadataUrl }), 'REDIRECT');
    assert.ok(provider.saved.client.client_id.startsWith('lc_'), 'registered itself');
    assert.equal(authorizationUrl.origin + authorizationUrl.pathname, `${larder.origin}/authorize`);
    assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorizationUrl.searchParams.get('resource'), `${larder.origin}/api`);

    // The person, signed in, sees the consent page and presses Allow.
    const consent = await fetch(authorizationUrl, { headers: { cookie }, redirect: 'manual' });
    assert.equal(consent.status, 200);
    const html = await consent.text();
    assert.match(html, /TS SDK client/);
    const fields = Object.fromEntries(
      [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [
        m[1],
        m[2].replaceAll('&#38;', '&').replaceAll('&#x2f;', '/').replaceAll('&amp;', '&'),
      ]),
    );
    const allowed = await fetch(`${larder.origin}/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...fields, decision: 'allow' }),
    });
    assert.equal(allowed.status, 303);
    const back = new URL(allowed.headers.get('location'));
    assert.equal(back.origin + back.pathname, REDIRECT);
    assert.equal(back.searchParams.get('state'), 'ts-sdk-state');
    assert.equal(back.searchParams.get('iss'), larder.origin);

    const code = back.searchParams.get('code');
    assert.equal(await auth(provider, { serverUrl, authorizationCode: code, resourceMetadataUrl }), 'AUTHORIZED');
    const first = provider.saved.tokens;
    const me = await fetch(serverUrl, { headers: { authorization: `Bearer ${first.access_token}` } });
    assert.equal(me.status, 200);
    assert.equal((await me.json()).auth, 'oauth');

    // With a refresh token stored, the next auth() refreshes: rotated, still working.
    assert.equal(await auth(provider, { serverUrl, resourceMetadataUrl }), 'AUTHORIZED');
    const second = provider.saved.tokens;
    assert.notEqual(second.refresh_token, first.refresh_token, 'rotated');
    const again = await fetch(serverUrl, { headers: { authorization: `Bearer ${second.access_token}` } });
    assert.equal(again.status, 200);
  });
});
