// login.test.mjs - signing in with an account in Debian's headless chromium (playwright-core)
// against the real livevlm (accounts, TLS) and fakevlm: / sends a page with no sign-in to /login,
// the admin signs in there, the main page names the user and tenant in the header, an API key is
// made in the keys dialog (shown once, and it works as a Bearer), the user signs out and is back
// on /login with the cookie gone. Also the invite form, the sign-in errors as a person sees them, and
// changing the password in the account menu's dialog (on a phone, by keyboard).
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

test('the admin changes the password in the dialog on a phone: a wrong current one is refused, other sign-ins end, the new csrf works, the new password signs in', TO, async () => {
  const oldPw = srv.adminPassword;
  const newPw = 'admin-new-password-1';
  // another sign-in of the same user: it must end with the change
  const other = await srv.request('/api/v1/login', { auth: false, body: { name: 'admin', password: oldPw } });
  assert.equal(other.status, 200, other.text);
  const otherCookie = /livevlm_session=([0-9a-f]{64})/.exec(String(other.headers['set-cookie']))[1];

  const ctx = await br.newContext({ viewport: { width: 375, height: 740 } }); // a phone
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, [...EXPECTED,
    { text: /status of 403/, url: /\/api\/v1\/password$/, why: 'a wrong current password is answered 403 wrong_password, shown in the dialog' }]);
  await page.goto(`${srv.origin}/login`);
  await page.fill('#signinName', 'admin');
  await page.fill('#signinPassword', oldPw);
  await page.click('#signinSubmit');
  await page.waitForURL(`${srv.origin}/`, { timeout: T(10000) });
  await page.locator('#userMenu').waitFor({ state: 'visible', timeout: T(10000) });
  const csrf1 = await page.evaluate(async () => (await (await fetch('/api/v1/me')).json()).csrf);

  // the item, by keyboard: open the menu, arrow to it, Enter
  await page.focus('#userMenuBtn');
  await page.keyboard.press('Enter');
  await page.locator('#menuPassword').waitFor({ state: 'visible' });
  for (let i = 0; i < 5 && !(await page.evaluate(() => document.activeElement?.id === 'menuPassword')); i++) {
    await page.keyboard.press('ArrowDown');
  }
  await page.keyboard.press('Enter');
  await page.locator('#passwordModal').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'pwCurrent', 'the focus is on the first field');
  const box = await page.locator('#passwordModal .modal-box').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 375, `the dialog fits a 375 px phone: ${JSON.stringify(box)}`);

  // said before sending: too short, then the two differ
  await page.fill('#pwCurrent', oldPw);
  await page.fill('#pwNew', 'short');
  await page.fill('#pwNew2', 'short');
  await page.click('#passwordSubmit');
  assert.match(await page.locator('#passwordError').textContent(), /at least 10 characters/);
  await page.fill('#pwNew', newPw);
  await page.fill('#pwNew2', `${newPw}x`);
  await page.click('#passwordSubmit');
  assert.match(await page.locator('#passwordError').textContent(), /differ/);

  // a wrong current password: the server's answer in the dialog, the password unchanged
  await page.fill('#pwCurrent', 'not-the-password');
  await page.fill('#pwNew2', newPw);
  await page.evaluate(() => { document.getElementById('passwordError').textContent = ''; });
  await page.click('#passwordSubmit');
  await page.waitForFunction(() => document.getElementById('passwordError').textContent.length > 0);
  assert.equal(await page.locator('#passwordError').textContent(), 'The current password is wrong.');
  assert.equal(await page.locator('#passwordOk').isHidden(), true);

  // the right one: changed, said so, the fields emptied
  await page.fill('#pwCurrent', oldPw);
  await page.click('#passwordSubmit');
  await page.locator('#passwordOk').waitFor({ state: 'visible', timeout: T(10000) });
  assert.equal(await page.locator('#passwordOk').textContent(), 'Password changed. Your other sign-ins were signed out.');
  assert.equal(await page.locator('#passwordError').textContent(), '');
  assert.equal(await page.inputValue('#pwNew'), '');
  srv.adminPassword = newPw;
  const gone = await srv.request('/api/v1/me', { auth: false, headers: { Cookie: `livevlm_session=${otherCookie}` } });
  assert.equal(gone.status, 401, 'the other sign-in ended');
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#passwordModal').isHidden(), true, 'Escape closes it');

  // the page keeps working: a new csrf, which the keys dialog's POST carries
  const csrf2 = await page.evaluate(async () => (await (await fetch('/api/v1/me')).json()).csrf);
  assert.match(csrf2, /^[0-9a-f]{64}$/);
  assert.notEqual(csrf2, csrf1, 'a new sign-in, a new csrf');
  await page.click('#userMenuBtn');
  await page.click('#menuKeys');
  await page.locator('#keysModal').waitFor({ state: 'visible' });
  await page.fill('#keyName', 'after the change');
  await page.click('#keyCreate');
  await page.locator('#keyNew').waitFor({ state: 'visible', timeout: T(10000) });
  assert.equal(await page.locator('#keysError').textContent(), '');
  // the list is fetched again after the key is shown: wait for it rather than read it at once
  await page.locator('#keysList').getByText('after the change').waitFor({ state: 'visible', timeout: T(10000) });
  const key = (await page.locator('#keyNewValue').textContent()).trim();
  await page.click('#keysDone');

  // sign out, then in with the new password
  await page.click('#userMenuBtn');
  await page.click('#menuSignOut');
  await page.waitForURL(/\/login$/, { timeout: T(10000) });
  await page.fill('#signinName', 'admin');
  await page.fill('#signinPassword', newPw);
  await page.click('#signinSubmit');
  await page.waitForURL(`${srv.origin}/`, { timeout: T(10000) });
  await page.locator('#userMenu').waitFor({ state: 'visible', timeout: T(10000) });
  assert.equal(await page.locator('#userName').textContent(), 'admin');
  errs.check('change password');
  await br.closeContext(ctx);

  // a page that acts with an API key (a header a browser would not send by itself): no such item
  const kctx = await br.newContext({ extraHTTPHeaders: { Authorization: `Bearer ${key}` } });
  const kpage = await kctx.newPage();
  await kpage.goto(`${srv.origin}/`);
  await kpage.locator('#userMenu').waitFor({ state: 'visible', timeout: T(10000) });
  await kpage.click('#userMenuBtn');
  await kpage.locator('#menuKeys').waitFor({ state: 'visible' });
  assert.equal(await kpage.locator('#menuPassword').isHidden(), true, 'an API key cannot change the password');
  await br.closeContext(kctx);
});
