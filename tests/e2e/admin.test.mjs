// admin.test.mjs - the admin page (/admin, web/admin.js) in Debian's chromium (playwright-core)
// against the real livevlm with accounts and fakevlm: an admin signed in with a cookie adds a
// tenant with a quota and a user with an invite link (shown once, with a copy button), sees a live
// session appear in the 2-second list and kicks it (the session's socket hears kicked_by_admin),
// and finds each of these in the audit log; a user who is no admin gets a sentence and a link
// back; at 375x700 nothing on the page is wider than the screen. Every page fails the test on an
// uncaught exception or a console error (watchPageErrors).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, makeTempDir, LIVEVLM_BIN, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(120000) };
const PW = { boss: 'boss-password-1', joe: 'joe-password-1' };
let br; let srv; let configDir; let shotDir;
const keys = {};

function cli(args, input) {
  const r = spawnSync(LIVEVLM_BIN, [...args, '--config-dir', configDir], { input, encoding: 'utf8', timeout: T(20000) });
  if (r.status !== 0) throw new Error(`livevlm ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

before(async () => {
  const fake = await startFakevlm({ slots: 4 });
  const dir = makeTempDir('admin-e2e');
  shotDir = dir;
  configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir, { recursive: true, mode: 0o700 });
  cli(['user', 'add', 'boss', '--role', 'admin', '--password-stdin'], `${PW.boss}\n`);
  cli(['user', 'add', 'joe', '--role', 'user', '--password-stdin'], `${PW.joe}\n`);
  [keys.joe] = cli(['key', 'add', 'joe', '--scope', 'stream']);
  // the harness reads a token file after start in every mode but none; accounts mode ignores it
  fs.writeFileSync(path.join(configDir, 'token'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
  srv = await startLivevlm({ dir, configDir, auth: 'accounts', backends: [{ id: 'fake', url: fake.url }] });
  srv.token = null;
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

/** A context signed in as name with the password form's API (the cookie lands in the context). */
async function signedIn(name, ctxOpts = {}) {
  const ctx = await br.newContext(ctxOpts);
  const res = await ctx.request.post(`${srv.origin}/api/v1/login`, { data: { name, password: PW[name] } });
  assert.equal(res.status(), 200, `sign-in of ${name}: ${await res.text()}`);
  const page = await ctx.newPage();
  page.on('dialog', (d) => d.accept()); // the page confirms deletes and kicks
  const errs = watchPageErrors(page);
  return { ctx, page, errs };
}

async function openAdmin(page) {
  await page.goto(`${srv.origin}/admin`);
  await page.locator('#adminSections').waitFor({ state: 'visible', timeout: T(10000) });
  await page.waitForFunction(() => document.querySelector('#usersTable tbody tr[data-user="boss"]'), null, { timeout: T(10000) });
}

test('an admin adds a tenant with a quota and a user with an invite, kicks a live session, reads the audit log', TO, async () => {
  const { ctx, page, errs } = await signedIn('boss');
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.origin });
  await openAdmin(page);

  // a tenant with a quota
  await page.fill('#tenantId', 'acme');
  await page.fill('#tenantName', 'Acme Corp');
  await page.fill('#tenantWeight', '3');
  await page.fill('#tenantModels', 'fake-vlm-1');
  await page.fill('#tenantFpm', '60');
  await page.fill('#tenantAnswers', '500');
  await page.locator('#tenantForm button[type="submit"]').click();
  const row = page.locator('#tenantsTable tr[data-tenant="acme"]');
  await row.waitFor({ timeout: T(5000) });
  assert.match(await row.innerText(), /60 fpm, 500 answers\/day/);
  assert.match(await row.innerText(), /fake-vlm-1/);

  // a user in it, invited: the link is shown once, with a copy button
  await page.fill('#userAddName', 'dana');
  await page.selectOption('#userAddRole', 'user');
  await page.selectOption('#userAddTenant', 'acme');
  await page.locator('#userAddForm button[type="submit"]').click();
  await page.locator('#inviteBox').waitFor({ state: 'visible', timeout: T(5000) });
  const link = await page.inputValue('#inviteLink');
  assert.match(link, new RegExp(`^${srv.origin}/login\\?invite=[0-9a-f]{64}$`));
  await page.click('#inviteCopy');
  await page.waitForFunction(() => /copied|Copy failed/.test(document.getElementById('adminToast').textContent), null, { timeout: T(3000) });
  const dana = page.locator('#usersTable tr[data-user="dana"]');
  await dana.waitFor({ timeout: T(5000) });
  assert.match(await dana.innerText(), /acme/);
  assert.match(await dana.innerText(), /invited/);

  // a live session of joe appears in the list (refreshed every 2 s) and is kicked
  const c = await srv.session({}, { token: keys.joe });
  const id = c.session.session_id;
  const srow = page.locator(`#sessionsTable tr[data-session="${id}"]`);
  await srow.waitFor({ timeout: T(6000) });
  assert.match(await srow.innerText(), /joe/);
  await srow.getByRole('button', { name: /End the session of joe/ }).click();
  const err = await c.nextError('kicked_by_admin', { timeoutMs: T(5000) });
  assert.match(err.message, /administrator/);
  await srow.waitFor({ state: 'detached', timeout: T(6000) });
  await c.close();

  // the audit log shows all three
  await page.click('#auditRefresh');
  await page.waitForFunction(() => {
    const t = document.getElementById('auditTable').innerText;
    return /tenant\.put/.test(t) && /user\.add/.test(t) && /session\.kick/.test(t);
  }, null, { timeout: T(5000) });
  const audit = await page.locator('#auditTable').innerText();
  assert.match(audit, /boss/);
  assert.match(audit, /dana/);

  // the usage chart is drawn (plain SVG) and the export links point at /api/v1/usage
  await page.locator('#usageChart svg').waitFor({ timeout: T(5000) });
  assert.equal(await page.getAttribute('#usageCsv', 'href'), '/api/v1/usage?format=csv');
  errs.check('admin page');
  await br.closeContext(ctx);
});

test('someone who is no admin sees a sentence and a link back', TO, async () => {
  const { ctx, page, errs } = await signedIn('joe');
  await page.goto(`${srv.origin}/admin`);
  await page.locator('#adminMessage').waitFor({ state: 'visible', timeout: T(10000) });
  assert.match(await page.locator('#adminMessageText').innerText(), /for administrators only/);
  assert.equal(await page.getAttribute('#adminMessageLink', 'href'), '/');
  assert.equal(await page.locator('#adminSections').isVisible(), false);
  errs.check('admin page as a user');
  await br.closeContext(ctx);
});

test('at 375x700 nothing is wider than the screen; the sections are reachable with the keyboard', TO, async () => {
  const { ctx, page, errs } = await signedIn('boss', { viewport: { width: 375, height: 700 }, isMobile: true, hasTouch: true });
  await openAdmin(page);
  await page.locator('#usageChart svg').waitFor({ timeout: T(5000) });
  const file = path.join(shotDir, 'admin-375.png');
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(fs.statSync(file).size > 10000, 'a screenshot was taken');
  const wide = await page.evaluate(() => {
    const out = [];
    const W = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth > W) out.push(`document ${document.documentElement.scrollWidth} > ${W}`);
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (!r.width || getComputedStyle(el).visibility === 'hidden' || r.right <= 0) continue;
      if (r.right > W + 0.5) out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} right ${Math.round(r.right)}`);
    }
    return out.slice(0, 10);
  });
  assert.deepEqual(wide, [], 'nothing overflows horizontally at 375 px');
  // the first Tab reaches the skip link, which leads to the content
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
  errs.check('admin page on a phone');
  await br.closeContext(ctx);
});
