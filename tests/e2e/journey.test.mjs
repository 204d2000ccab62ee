// journey.test.mjs - the README's "Accounts, tenants and quotas" walk, end to end, as a new user
// would do it: a fresh server (accounts are the default) prints its first admin's password; the
// operator adds a tenant with a quota and invites a user with the command line; the invited user
// sets a password in Chromium; a colleague signs in with single sign-on (a real OpenID provider,
// npm oidc-provider) and lands in the tenant her claims name; she streams the fake camera until
// the tenant's answers-per-day quota is reached and the page says which quota, its limit and when
// it renews; the admin exports the usage as CSV and JSON and finds exactly those answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cli, launchBrowser, stopAll, waitUntil, watchPageErrors, T } from '../lib/harness.mjs';
import { startWithOidc } from '../lib/oidc.mjs';

const TO = { timeout: T(180000) };
const QUOTA = 3;
let idp, srv, br;

// Chromium logs every 4xx a fetch gets; these are the pages asking on purpose.
const EXPECTED = [
  { text: /status of 401/, url: /\/api\/v1\/me$/, why: 'a page with no sign-in asks /api/v1/me and goes to /login on 401' },
];

before(async () => {
  ({ idp, srv } = await startWithOidc({
    accounts: { carol: { email: 'carol@acme.test', email_verified: true, tenant: 'acme', roles: ['user'] } },
  }));
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
  await idp?.stop();
});

async function signedInAs(page, name) {
  await page.locator('#userMenu').waitFor({ state: 'visible', timeout: T(15000) });
  assert.equal(await page.locator('#userName').textContent(), name);
}

test('first admin, tenant with a quota, invite, single sign-on, the quota as the page shows it, usage export', TO, async () => {
  // 1. the first start made an admin and printed its password once
  assert.match(srv.adminPassword || '', /^[0-9a-f]{24}$/, 'the first admin password is printed on standard output');

  // 2. a tenant with a quota, and an invited user in it (command line, against the running server's database)
  let r = cli(['tenant', 'add', 'acme', '--name', 'Acme', '--answers-day', String(QUOTA)], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  r = cli(['user', 'add', 'bob', '--tenant', 'acme', '--invite'], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const invite = r.lines.find((l) => l.includes('/login?invite='));
  assert.ok(invite, `an invite link is printed: ${r.stdout}`);
  await new Promise((res) => setTimeout(res, T(1500))); // the server reloads its accounts each second

  // 3. bob opens the invite link, chooses a password and is signed in
  const bobCtx = await br.newContext();
  const bob = await bobCtx.newPage();
  const bobErrs = watchPageErrors(bob, EXPECTED);
  await bob.goto(`${srv.origin}${invite.slice(invite.indexOf('/login?invite='))}`);
  await bob.locator('#inviteForm').waitFor({ state: 'visible' });
  await bob.fill('#invitePassword', 'correct horse battery');
  await bob.fill('#invitePassword2', 'correct horse battery');
  await bob.click('#inviteSubmit');
  await bob.waitForURL(`${srv.origin}/`, { timeout: T(15000) });
  await signedInAs(bob, 'bob');
  await br.closeContext(bobCtx);
  bobErrs.check?.();

  // 4. carol signs in with single sign-on: /login -> the provider's form -> back, in tenant acme
  await waitUntil(async () => (await srv.request('/api/v1/me', { auth: false })).json().oidc === true,
    { timeoutMs: T(15000), what: 'single sign-on offered' });
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const provider = new RegExp(`^(https://fonts\\.googleapis\\.com/|${idp.issuer.replace(/[.:/]/g, '\\$&')}/)`);
  const errs = watchPageErrors(page, [...EXPECTED,
    { text: /ERR_NAME_NOT_RESOLVED|status of 404/, url: provider,
      why: "the test provider's own sign-in page (oidc-provider devInteractions) links a web font and has no favicon" }]);
  await page.goto(`${srv.origin}/`);
  await page.waitForURL(/\/login$/, { timeout: T(10000) });
  await page.locator('#ssoBtn').waitFor({ state: 'visible' });
  await page.click('#ssoBtn');
  await page.waitForURL((u) => u.origin === idp.issuer, { timeout: T(15000) });
  await page.fill('input[name="login"]', 'carol');
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');
  await page.waitForURL(`${srv.origin}/`, { timeout: T(20000) });
  await signedInAs(page, 'carol@acme.test');
  assert.match(await page.locator('#userTenant').textContent(), /acme/i);

  // 5. she streams the fake camera; the tenant's quota stops it and the page says why
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });
  await page.waitForFunction(() => {
    const s = document.getElementById('cameraSelect');
    return s && [...s.options].some((o) => o.value);
  }, null, { timeout: T(10000) });
  const cam = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
  await page.selectOption('#cameraSelect', cam);
  await page.locator('#startBtn').click();
  const notice = page.getByText(/Quota reached/);
  await notice.first().waitFor({ state: 'visible', timeout: T(60000) });
  const text = await notice.first().textContent();
  assert.match(text, new RegExp(`\\(${QUOTA}/${QUOTA}\\)`), `the notice names used/limit: ${text}`);
  assert.match(text, /answers/i, `the notice names the quota: ${text}`);
  assert.match(text, /renews/i, `the notice says when it renews: ${text}`);
  // no more answers while over the quota
  await new Promise((res) => setTimeout(res, T(2000)));
  await page.locator('#stopBtn').click().catch(() => {});
  errs.check?.();

  // 6. the admin exports the usage: exactly the quota's answers, charged to carol in acme
  r = cli(['key', 'add', 'admin', '--scope', 'admin', '--name', 'export'], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const key = r.lines.find((l) => l.startsWith('lvk_'));
  assert.ok(key, r.stdout);
  await new Promise((res) => setTimeout(res, T(1500)));
  const hdr = { auth: false, headers: { Authorization: `Bearer ${key}` } };
  let usage;
  await waitUntil(async () => {
    const u = await srv.request('/api/v1/usage?tenant=acme&format=json', hdr);
    if (u.status !== 200) return false;
    usage = u.json();
    return usage.records.length >= QUOTA;
  }, { timeoutMs: T(10000), what: 'usage recorded' });
  const ok = usage.records.filter((x) => x.outcome === 'ok');
  assert.equal(ok.length, QUOTA, JSON.stringify(usage.records));
  for (const rec of ok) {
    assert.equal(rec.tenant, 'acme');
    assert.ok(rec.completion_tokens > 0, JSON.stringify(rec));
    assert.ok(rec.image_bytes > 0, JSON.stringify(rec));
  }
  const csv = await srv.request('/api/v1/usage?tenant=acme&format=csv', hdr);
  assert.equal(csv.status, 200);
  assert.match(csv.headers['content-type'], /text\/csv/);
  const rows = csv.text.trim().split(/\r?\n/);
  assert.ok(rows[0].includes('answer_id'), rows[0]);
  assert.equal(rows.length - 1, usage.records.length, 'the CSV holds the same records as the JSON');
});
