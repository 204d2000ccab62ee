// oidc.test.mjs - single sign-on in Debian's headless chromium (playwright-core) against a real
// OpenID provider (npm oidc-provider, tests/lib/oidc.mjs): / sends a page with no sign-in to
// /login, which offers "Sign in with single sign-on"; that goes to the provider's login form, and
// once it is filled in the browser comes back signed in, as the account the provider's claims
// describe (tenant and role). A person whose organisation has no tenant reads a page saying so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, stopAll, watchPageErrors, T } from '../lib/harness.mjs';
import { startWithOidc } from '../lib/oidc.mjs';

const TO = { timeout: T(90000) };
let idp, srv, br;

// Chromium logs every 4xx a fetch or navigation gets as a console error; these are on purpose.
const EXPECTED = [
  { text: /status of 401/, url: /\/api\/v1\/me$/, why: 'GET /api/v1/me answers 401 to a page with no sign-in: its cue to go to /login' },
  { text: /status of 403/, url: /\/auth\/oidc\/callback/, why: 'the no-tenant page is a 403' },
  { text: /ERR_NAME_NOT_RESOLVED/, url: /^https:\/\/fonts\.googleapis\.com\//,
    why: "the provider's own login page asks for a web font; the test machine has no outside network" },
];
// ...and that page has no favicon; both are the provider's, not livevlm's
const expected = () => [...EXPECTED, { text: /status of 404/, url: new RegExp(`^${idp.issuer}/favicon\\.ico$`),
  why: "the provider's login page has no favicon" }];

before(async () => {
  ({ idp, srv } = await startWithOidc({
    tenantClaim: 'org', authMethod: 'client_secret_post', tenant: { id: 'acme', name: 'Acme' },
    accounts: {
      erin: { email: 'erin@acme.test', email_verified: true, org: 'acme', roles: ['user'] },
      frank: { email: 'frank@initech.test', email_verified: true, org: 'initech', roles: ['user'] },
    },
  }));
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
  await idp?.stop();
});

async function providerLogin(page, login) {
  await page.waitForURL((u) => u.toString().startsWith(idp.issuer), { timeout: T(10000) });
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');
}

test('/login -> "Sign in with single sign-on" -> the provider\'s form -> back signed in', TO, async () => {
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, expected());
  await page.goto(`${srv.origin}/`);
  await page.waitForURL(/\/login/, { timeout: T(10000) });
  await page.locator('#ssoBtn').waitFor({ state: 'visible', timeout: T(10000) });
  assert.match(await page.locator('#ssoBtn').textContent(), /Sign in with single sign-on/);
  await page.click('#ssoBtn');
  await providerLogin(page, 'erin');
  await page.waitForURL((u) => u.origin === srv.origin && !/\/(login|auth\/)/.test(u.pathname), { timeout: T(15000) });
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).json());
  assert.equal(me.signed_in, true);
  assert.equal(me.user.name, 'erin@acme.test');
  assert.equal(me.tenant.id, 'acme');
  assert.equal(me.role, 'user');
  assert.equal(me.credential, 'cookie');
  const cookies = await ctx.cookies(srv.origin);
  const c = cookies.find((k) => k.name === 'livevlm_session');
  assert.ok(c, 'the sign-in cookie is set');
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, 'Lax');
  assert.deepEqual(errs.errors, []);
  await ctx.close();
});

test('an organisation with no tenant here reads a page that says so, with a way back', TO, async () => {
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, expected());
  await page.goto(`${srv.origin}/auth/oidc/login`);
  await providerLogin(page, 'frank');
  await page.waitForURL((u) => u.origin === srv.origin && u.pathname === '/auth/oidc/callback', { timeout: T(15000) });
  await page.locator('#message').waitFor({ timeout: T(5000) });
  assert.match(await page.locator('#message').textContent(), /organisation 'initech' has no tenant here; ask the admin/);
  await page.click('text=Back to sign-in');
  await page.waitForURL(/\/login$/, { timeout: T(10000) });
  assert.deepEqual(errs.errors, []);
  await ctx.close();
});
