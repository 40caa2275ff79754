// Users are separate: what one user saves, another can neither see, read, open nor delete;
// admin pages are for admins; signed-out visitors get the sign-in page.
//
// Two browser contexts (two separate cookie jars) on one server: `owner` (the start-up login
// link; an admin by default) and `bob` (a link from `larder login-link --user bob`).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { duckdbReady, launchBrowser, saveQuery, savedItem, useLarder, watch } from './larder.mjs';

const OWNER_QUERY = 'Owner only (e2e)';
const OWNER_SQL = "SELECT 'owner secret' AS s";

describe('isolation between users', { timeout: 90_000 }, () => {
  const larder = useLarder();
  let browser;
  const owner = {};
  const bob = {};
  let ownerQueryId;

  before(async () => {
    browser = await launchBrowser();
    for (const who of [owner, bob]) {
      who.context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
      who.seen = watch(who.context);
      who.page = await who.context.newPage();
    }
  });

  after(async () => {
    await browser?.close();
  });

  /** `GET` through a context's cookie jar (not the page: no console noise for 4xx). */
  const get = (who, p, headers) => who.context.request.get(`${larder.origin}${p}`, { headers, maxRedirects: 0 });

  it('owner signs in and saves a query', async () => {
    await owner.page.goto(larder.loginUrl);
    await Promise.all([owner.page.waitForURL(`${larder.origin}/query`), owner.page.click('#confirm-login')]);
    assert.equal(await owner.page.textContent('#signed-in-as'), 'owner');
    await duckdbReady(owner.page);
    await owner.page.fill('#sql-editor', OWNER_SQL);
    ownerQueryId = await saveQuery(owner.page, OWNER_QUERY);

    const mine = await (await get(owner, '/api/saved-queries')).json();
    assert.deepEqual(mine.map((q) => [q.id, q.name, q.sql]), [[ownerQueryId, OWNER_QUERY, OWNER_SQL]]);
  });

  it('the one-time start-up link cannot be used twice', async () => {
    const again = await bob.context.request.get(larder.loginUrl, { maxRedirects: 0 });
    assert.equal(again.status(), 403);
    assert.match(await again.text(), /This login link is not valid/);
    assert.equal((await bob.context.cookies()).length, 0, 'no session from a spent link');
  });

  it('bob (larder login-link --user bob) does not see owner’s saved query', async () => {
    const link = await larder.loginLink('bob');
    assert.notEqual(link, larder.loginUrl);
    await bob.page.goto(link);
    assert.equal(await bob.page.textContent('#login-user'), 'bob');
    await Promise.all([bob.page.waitForURL(`${larder.origin}/query`), bob.page.click('#confirm-login')]);
    assert.equal(await bob.page.textContent('#signed-in-as'), 'bob');
    await duckdbReady(bob.page);

    assert.equal(await bob.page.locator('#saved-queries li[data-saved-query]').count(), 0);
    assert.equal(await savedItem(bob.page, OWNER_QUERY).count(), 0);
    assert.ok(await bob.page.isVisible('#no-saved-queries'));
    assert.equal(await bob.page.locator(`[data-saved-query="${ownerQueryId}"]`).count(), 0);

    const me = await (await get(bob, '/api/me')).json();
    assert.equal(me.name, 'bob');
    assert.equal(me.admin, false);
    assert.deepEqual(await (await get(bob, '/api/saved-queries')).json(), []);
  });

  it('bob gets 404 for owner’s saved query, through the API and the sidebar route', async () => {
    const api = await get(bob, `/api/saved-queries/${ownerQueryId}`);
    assert.equal(api.status(), 404);
    assert.match(api.headers()['content-type'], /^application\/problem\+json/);
    const problem = await api.json();
    assert.equal(problem.status, 404);
    assert.doesNotMatch(JSON.stringify(problem), /owner secret/);

    const open = await get(bob, `/queries/${ownerQueryId}/open`, { 'HX-Request': 'true' });
    assert.equal(open.status(), 404);
    assert.equal(open.headers()['hx-trigger'], undefined, 'no SQL handed to bob’s editor');
    assert.doesNotMatch(await open.text(), /owner secret/);

    // Owner, for contrast, reads it fine.
    const own = await get(owner, `/api/saved-queries/${ownerQueryId}`);
    assert.equal(own.status(), 200);
    assert.equal((await own.json()).sql, OWNER_SQL);
  });

  it('bob cannot delete owner’s saved query', async () => {
    const csrf = await bob.page.getAttribute('meta[name="csrf-token"]', 'content');
    const del = (headers) =>
      bob.context.request.delete(`${larder.origin}/api/saved-queries/${ownerQueryId}`, { headers });
    assert.equal((await del({})).status(), 403, 'no CSRF token: refused');
    assert.equal((await del({ 'X-CSRF-Token': csrf })).status(), 404, 'not bob’s to delete');
    const still = await get(owner, `/api/saved-queries/${ownerQueryId}`);
    assert.equal(still.status(), 200);
  });

  it('bob is not an admin: no Actors link, 403 on /admin/actors', async () => {
    assert.equal(await bob.page.locator('nav a[href="/admin/actors"]').count(), 0);
    assert.equal(await owner.page.locator('nav a[href="/admin/actors"]').count(), 1);

    const res = await bob.page.goto(`${larder.origin}/admin/actors`);
    assert.equal(res.status(), 403);
    assert.match(await bob.page.textContent('main'), /This page is for administrators\./);
    assert.equal(await bob.page.locator('#actor-rows').count(), 0);
    assert.equal((await get(bob, '/admin/actors/rows', { 'HX-Request': 'true' })).status(), 403);
  });

  it('a signed-out visitor to /query lands on the sign-in page', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const res = await page.goto(`${larder.origin}/query`);
      assert.equal(res.status(), 200);
      assert.equal(page.url(), `${larder.origin}/`);
      assert.equal(await page.textContent('h1'), 'Welcome to Larder');
      assert.match(await page.textContent('main'), /larder login-link/);
      assert.equal(await page.locator('#island').count(), 0);
      assert.equal(await page.locator('nav').count(), 0);
      assert.equal(await page.locator('#signed-in-as').count(), 0);
      const api = await context.request.get(`${larder.origin}/api/saved-queries`);
      assert.equal(api.status(), 401);
    } finally {
      await context.close();
    }
  });

  it('the actor inspector (owner) lists the library actors, and keeps polling', async () => {
    const page = owner.page;
    await page.click('nav a[href="/admin/actors"]');
    await page.waitForSelector('#actor-rows tr[data-kind]');
    assert.equal(page.url(), `${larder.origin}/admin/actors`);

    const rows = () =>
      page.$$eval('#actor-rows tr[data-kind]', (trs) =>
        trs.map((tr) => ({ kind: tr.dataset.kind, user: tr.cells[1].textContent.trim(), state: tr.cells[2].textContent.trim() })),
      );
    const has = (list, kind, user) => list.some((r) => r.kind === kind && r.user === user);

    let list = await rows();
    assert.ok(has(list, 'library', 'owner'), `a library row for owner in ${JSON.stringify(list)}`);
    assert.ok(has(list, 'library', 'bob'), `a library row for bob in ${JSON.stringify(list)}`);
    assert.ok(has(list, 'node', ''), 'the node actor');
    assert.ok(has(list, 'accounts', ''), 'the accounts actor');
    for (const r of list) assert.equal(r.state, 'running', `${r.kind} ${r.user}`);

    // htmx polls /admin/actors/rows every 2 s and swaps the rows in.
    await page.evaluate(() => {
      document.querySelector('#actor-rows tr').dataset.e2eStale = 'yes';
    });
    const poll = await page.waitForResponse((r) => new URL(r.url()).pathname === '/admin/actors/rows', {
      timeout: 5_000,
    });
    assert.equal(poll.status(), 200);
    await page.waitForFunction(() => !document.querySelector('#actor-rows tr[data-e2e-stale]'));
    list = await rows();
    assert.ok(has(list, 'library', 'owner'), `after a poll: ${JSON.stringify(list)}`);
  });

  it('stayed on the Larder origin without unexpected console or page errors', () => {
    for (const who of [owner, bob]) {
      assert.deepEqual(who.seen.foreign(larder.origin), []);
      assert.deepEqual(who.seen.pageErrors, []);
    }
    assert.deepEqual(owner.seen.consoleErrors, []);
    assert.deepEqual(owner.seen.failedResponses, []);
    // bob's only failure is the 403 page he was shown.
    assert.deepEqual(bob.seen.failedResponses, [`403 GET ${larder.origin}/admin/actors`]);
    assert.deepEqual(
      bob.seen.consoleErrors,
      [`${larder.origin}/admin/actors: Failed to load resource: the server responded with a status of 403 (Forbidden)`],
    );
  });

  it('error pages do not send the browser to a missing /favicon.ico', () => {
    assert.deepEqual(bob.seen.consoleErrors.filter((e) => e.startsWith(`${larder.origin}/favicon.ico:`)), []);
  });
});
