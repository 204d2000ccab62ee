// login.test.mjs - signing in with an account in Debian's headless chromium (playwright-core)
// against the real livevlm (accounts, TLS) and fakevlm: / sends a page with no sign-in to /login,
// the admin signs in there, the main page names the user and tenant in the header, an API key is
// made in the keys dialog (shown once, and it works as a Bearer), the user signs out and is back
// on /login with the cookie gone. Also the invite form and the sign-in errors as a person sees them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, cli, T } from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
let fake;
let srv;
let br;

// Chromium logs every 4xx a fetch gets as a console error; these are the page asking on purpose.
const EXPECTED = [
  { text: /status of 401/, url: /\/api\/v1\/me$/, why: 'GET /api/v1/me answers 401 to a page with no sign-in: its cue to go to /login' },
  { text: /status of 401/, url: /\/api\/v1\/(login|invite)$/, why: 'a wrong password or invite is answered 401, shown on the form' },
];

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'] });
  srv = await startLivevlm({ backends: [fake], tls: true, auth: 'accounts' });
  if (!srv.adminPassword) srv.adminPassword = (/\n([0-9a-f]{24})\n/.exec(fs.readFileSync(srv.stdoutPath, 'utf8')) || [])[1];
  assert.ok(srv.adminPassword, 'the first admin password was printed');
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

test('/ goes to /login; the admin signs in, is named in the header, makes an API key in the dialog, signs out', TO, async () => {
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, EXPECTED);
  await page.goto(`${srv.origin}/`);
  await page.waitForURL(/\/login$/, { timeout: T(10000) });
  assert.equal(await page.locator('#ssoBox').isHidden(), true, 'no single sign-on button without an issuer');

  // a wrong password first: the form says so and stays
  await page.fill('#signinName', 'admin');
  await page.fill('#signinPassword', 'not-the-password');
  await page.click('#signinSubmit');
  await page.waitForFunction(() => document.getElementById('signinError').textContent.length > 0);
  assert.equal(await page.locator('#signinError').textContent(), 'Wrong name or password.');

  await page.fill('#signinPassword', srv.adminPassword);
  await page.click('#signinSubmit');
  await page.waitForURL(`${srv.origin}/`, { timeout: T(10000) });
  await page.locator('#userMenu').waitFor({ state: 'visible', timeout: T(10000) });
  assert.equal(await page.locator('#userName').textContent(), 'admin');
  assert.match(await page.locator('#userTenant').textContent(), /^default$/i, 'the tenant by its name');
  assert.equal(await page.locator('#logoutBtn').isHidden(), true, 'the menu signs out instead');
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === 'livevlm_session');
  assert.ok(session && session.httpOnly && session.secure && session.sameSite === 'Lax', JSON.stringify(cookies));
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });

  // the menu: Admin shows for an admin; API keys opens the dialog
  await page.click('#userMenuBtn');
  assert.equal(await page.locator('#menuAdmin').isVisible(), true);
  await page.click('#menuKeys');
  await page.locator('#keysModal').waitFor({ state: 'visible' });
  await page.locator('#keysEmpty').waitFor({ state: 'visible' });
  await page.fill('#keyName', 'e2e key');
  await page.fill('#keyExpires', '7');
  await page.click('#keyCreate');
  await page.locator('#keyNew').waitFor({ state: 'visible' });
  const key = (await page.locator('#keyNewValue').textContent()).trim();
  assert.match(key, /^lvk_[0-9a-f]{64}$/);
  await page.locator('#keysList .key-row').first().waitFor();
  assert.match(await page.locator('#keysList').textContent(), /e2e key/);
  assert.doesNotMatch(await page.locator('#keysList').textContent(), new RegExp(key.slice(4)), 'the list never shows it');
  const asKey = await srv.request('/api/v1/me', { auth: false, headers: { Authorization: `Bearer ${key}` } });
  assert.equal(asKey.status, 200, asKey.text);
  assert.equal(asKey.json().user.name, 'admin');
  await page.click('#keysDone');
  assert.equal(await page.locator('#keysModal').isHidden(), true);

  // sign out: back on /login, and the old cookie no longer works
  await page.click('#userMenuBtn');
  await page.click('#menuSignOut');
  await page.waitForURL(/\/login$/, { timeout: T(10000) });
  const old = await srv.request('/api/v1/me', { auth: false, headers: { Cookie: `livevlm_session=${session.value}` } });
  assert.equal(old.status, 401, 'signed out on the server too');
  errs.check('sign-in flow');
  await br.closeContext(ctx);
});

test('an invite link asks for the password twice, says what is wrong, then signs in', TO, async () => {
  const r = cli(['user', 'add', 'ivy', '--invite'], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const link = r.lines.find((l) => l.includes('/login?invite='));
  const ctx = await br.newContext({ viewport: { width: 390, height: 844 } }); // a phone
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, EXPECTED);
  await page.goto(`${srv.origin}${link.slice(link.indexOf('/login'))}`);
  await page.locator('#inviteForm').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#signinForm').isHidden(), true);
  assert.doesNotMatch(page.url(), /invite=/, 'the code left the address bar');
  await page.fill('#invitePassword', 'ivy-password-1');
  await page.fill('#invitePassword2', 'ivy-password-2');
  await page.click('#inviteSubmit');
  assert.match(await page.locator('#inviteError').textContent(), /differ/);
  await page.fill('#invitePassword', 'short');
  await page.fill('#invitePassword2', 'short');
  await page.click('#inviteSubmit');
  assert.match(await page.locator('#inviteError').textContent(), /at least 10 characters/);
  await page.fill('#invitePassword', 'ivy-password-1');
  await page.fill('#invitePassword2', 'ivy-password-1');
  await page.click('#inviteSubmit');
  await page.waitForURL(`${srv.origin}/`, { timeout: T(10000) });
  await page.locator('#userMenu').waitFor({ state: 'visible', timeout: T(10000) });
  assert.equal(await page.locator('#userName').textContent(), 'ivy');
  await page.click('#userMenuBtn');
  assert.equal(await page.locator('#menuAdmin').isHidden(), true, 'no Admin entry for a user');
  errs.check('invite flow');
  await br.closeContext(ctx);
});

test('a locked account says until when', TO, async () => {
  const r = cli(['user', 'add', 'lou', '--password-stdin'], { configDir: srv.configDir, input: 'lou-password-1\n' });
  assert.equal(r.code, 0, r.stderr);
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, [...EXPECTED,
    { text: /status of 429/, url: /\/api\/v1\/login$/, why: 'the locked account is answered 429' }]);
  await page.goto(`${srv.origin}/login`);
  await page.fill('#signinName', 'lou');
  for (let i = 0; i < 6; i++) {
    await page.fill('#signinPassword', `wrong-${i}-password`);
    await page.evaluate(() => { document.getElementById('signinError').textContent = ''; });
    await page.click('#signinSubmit');
    await page.waitForFunction(() => document.getElementById('signinError').textContent.length > 0);
  }
  assert.match(await page.locator('#signinError').textContent(), /locked until \d{1,2}:\d{2}:\d{2}/);
  errs.check('locked account');
  await br.closeContext(ctx);
});
