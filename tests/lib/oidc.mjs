// oidc.mjs - a real OpenID provider for the single sign-on tests: the npm package oidc-provider,
// in this process, on 127.0.0.1 with a free port. One static client (redirect URI given by the
// test), accounts whose claims the test sets (email, tenant, roles), its own login form
// (devInteractions: any password is accepted for a known login), consent skipped (a first-party
// client). Its signing keys are made here (RSA and P-256) so a test can also sign bearer tokens
// with a key the provider really publishes at its jwks_uri.
//
// Also: a small cookie-keeping HTTP client that walks the sign-in (livevlm /auth/oidc/login ->
// the provider's form -> livevlm's callback) the way a browser would.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';
import { cli, startFakevlm, startLivevlm, waitUntil, T } from './harness.mjs';

/**
 * Listen on a free port; the issuer URL is known at once, so livevlm can be started with it. The
 * provider itself is made by configure(opts), once livevlm's port (its redirect URI) is known;
 * requests that come before (livevlm's first discovery) wait for it and are then answered.
 * configure opts: clientId, clientSecret, redirectUris (array), accounts ({login: {claims...}}),
 * authMethod ('client_secret_basic' default, or 'client_secret_post').
 * Resolves {issuer, port, kids: {rsa, ec}, configure, signJwt, setAccount, stop}.
 */
export async function startOidcProvider() {
  const server = http.createServer();
  let handler = null;
  const early = [];
  server.on('request', (req, res) => { if (handler) handler(req, res); else early.push([req, res]); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const issuer = `http://127.0.0.1:${port}`;
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kids = { rsa: 'test-rsa-1', ec: 'test-ec-1' };
  const accounts = {};

  function configure(opts = {}) {
    Object.assign(accounts, opts.accounts || {});
    const provider = new Provider(issuer, {
      clients: [{
        client_id: opts.clientId || 'livevlm',
        client_secret: opts.clientSecret || 'livevlm-test-secret',
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: opts.authMethod || 'client_secret_basic',
      }],
      jwks: { keys: [
        { ...rsa.privateKey.export({ format: 'jwk' }), kid: kids.rsa, use: 'sig', alg: 'RS256' },
        { ...ec.privateKey.export({ format: 'jwk' }), kid: kids.ec, use: 'sig', alg: 'ES256' },
      ] },
      // the claims livevlm maps travel in the id_token itself (not only from userinfo)
      conformIdTokenClaims: false,
      claims: {
        openid: ['sub', 'tenant', 'org', 'roles'],
        email: ['email', 'email_verified'],
        profile: ['preferred_username', 'name'],
      },
      scopes: ['openid', 'email', 'profile'],
      pkce: { required: () => true, methods: ['S256'] },
      features: { devInteractions: { enabled: true } },
      cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
      async findAccount(ctx, id) {
        if (!accounts[id]) return undefined;
        return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
      },
      // a first-party client: no consent screen
      async loadExistingGrant(ctx) {
        const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
        grant.addOIDCScope('openid email profile');
        await grant.save();
        return grant;
      },
    });
    provider.on('server_error', (ctx, err) => { console.error('oidc-provider server_error', err); });
    handler = provider.callback();
    for (const [req, res] of early.splice(0)) handler(req, res);
  }

  /** A JWT signed with one of the provider's published keys ('rsa' or 'ec'); claims merged over
   * {iss, iat, exp: now + 300}. header overrides (kid, alg) for the refusal tests. */
  function signJwt(claims, { key = 'rsa', header = {} } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const alg = key === 'ec' ? 'ES256' : 'RS256';
    const h = { alg, kid: kids[key], typ: 'JWT', ...header };
    const p = { iss: issuer, iat: now, exp: now + 300, ...claims };
    const input = `${b64u(JSON.stringify(h))}.${b64u(JSON.stringify(p))}`;
    const priv = key === 'ec' ? ec.privateKey : rsa.privateKey;
    const sig = crypto.sign('sha256', Buffer.from(input),
      key === 'ec' ? { key: priv, dsaEncoding: 'ieee-p1363' } : priv);
    return `${input}.${sig.toString('base64url')}`;
  }

  return {
    issuer, port, kids, configure, signJwt,
    setAccount(login, claims) { accounts[login] = claims; },
    stop: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

const b64u = (s) => Buffer.from(s).toString('base64url');

/**
 * The single sign-on tests' start: a fake VLM, the provider, a livevlm with accounts pointed at it
 * (client livevlm / livevlm-test-secret; tenant from the tenantClaim claim, role from "roles"; then
 * extra args), and the provider configured with livevlm's callback, accounts and authMethod. With
 * tenant ({id, name}) that tenant is added by the command line, and this waits until single sign-on
 * answers (discovery and keys fetched) and the tenant has reached the server's snapshot.
 * Resolves {idp, srv}; the caller stops them (stopAll() and idp.stop()); the provider is stopped
 * here when a later step fails, as the caller then has no handle on it.
 */
export async function startWithOidc({ accounts, tenantClaim = 'tenant', authMethod, tenant, args = [] } = {}) {
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  const idp = await startOidcProvider();
  try {
    const srv = await startLivevlm({
      auth: 'accounts', backends: [fake],
      args: ['--oidc-issuer', idp.issuer, '--oidc-client-id', 'livevlm', '--oidc-client-secret', 'livevlm-test-secret',
        '--oidc-tenant-claim', tenantClaim, '--oidc-role-claim', 'roles', ...args],
    });
    idp.configure({ redirectUris: [`${srv.origin}/auth/oidc/callback`], authMethod, accounts });
    if (tenant) {
      const r = cli(['tenant', 'add', tenant.id, '--name', tenant.name], { configDir: srv.configDir });
      if (r.code !== 0) throw new Error(`tenant add ${tenant.id}: ${r.stderr}`);
      await waitUntil(async () => (await new CookieClient().request(`${srv.origin}/auth/oidc/login`)).status === 302,
        { timeoutMs: T(15000), what: 'single sign-on ready' });
      await new Promise((res) => setTimeout(res, T(1500))); // the server reloads its accounts each second
    }
    return { idp, srv };
  } catch (e) {
    await idp.stop();
    throw e;
  }
}

/** An HTTP client that keeps cookies per origin (host:port) and never follows redirects itself. */
export class CookieClient {
  constructor() { this.jars = new Map(); }

  jar(origin) {
    if (!this.jars.has(origin)) this.jars.set(origin, new Map());
    return this.jars.get(origin);
  }

  cookie(origin, name) { return this.jar(origin).get(name); }

  /** One request: resolves {status, headers, text, url}. */
  request(url, { method = 'GET', body, headers = {}, timeoutMs = 10000 } = {}) {
    const u = new URL(url);
    const jar = this.jar(u.host);
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const h = { ...headers, ...(cookie ? { Cookie: cookie } : {}) };
    if (body !== undefined) {
      h['Content-Type'] = h['Content-Type'] || 'application/x-www-form-urlencoded';
      h['Content-Length'] = Buffer.byteLength(body);
    }
    return new Promise((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h },
        (res) => {
          for (const sc of res.headers['set-cookie'] || []) {
            const [pair, ...attrs] = sc.split(';');
            const i = pair.indexOf('=');
            const name = pair.slice(0, i).trim();
            const value = pair.slice(i + 1).trim();
            const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
            if (gone) jar.delete(name); else jar.set(name, value);
          }
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'), url }));
        });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout: ${method} ${url}`)));
      req.on('error', reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  /** Follow redirects (at most max) from url; stops at the first non-3xx answer, or at a redirect
   * whose target matches stopAt (a RegExp), which is returned unfollowed. */
  async follow(url, { max = 10, stopAt = null, ...opts } = {}) {
    let res = await this.request(url, opts);
    for (let i = 0; i < max && res.status >= 300 && res.status < 400 && res.headers.location; i++) {
      const next = new URL(res.headers.location, res.url).toString();
      if (stopAt && stopAt.test(next)) return { ...res, next };
      res = await this.request(next);
    }
    return res;
  }
}

/** The fields of the first <form> in html: {action, fields: {name: value}}. */
export function parseForm(html) {
  const f = /<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!f) return null;
  const fields = {};
  for (const m of f[2].matchAll(/<input[^>]*>/gi)) {
    const name = /name="([^"]*)"/i.exec(m[0]);
    const value = /value="([^"]*)"/i.exec(m[0]);
    if (name) fields[name[1]] = value ? value[1] : '';
  }
  return { action: f[1].replace(/&amp;/g, '&'), fields };
}

/**
 * Walk a sign-in: GET server /auth/oidc/login, through the provider's login form (login, any
 * password), back to livevlm's callback. Resolves {callback: the callback's answer, client,
 * session: the livevlm_session cookie or undefined}. client may be passed to keep its cookies.
 */
export async function oidcSignIn(serverOrigin, login, { client = new CookieClient(), tamperState = null } = {}) {
  const start = await client.request(`${serverOrigin}/auth/oidc/login`);
  if (start.status !== 302) throw new Error(`/auth/oidc/login answered ${start.status}: ${start.text.slice(0, 300)}`);
  const cb = /\/auth\/oidc\/callback/;
  let res = await client.follow(start.headers.location, { stopAt: cb });
  if (!res.next) {
    const form = parseForm(res.text);
    if (!form) throw new Error(`no login form at the provider (status ${res.status}): ${res.text.slice(0, 300)}`);
    const fields = { ...form.fields, login, password: 'any' };
    const action = new URL(form.action, res.url).toString();
    res = await client.follow(action, { method: 'POST', body: new URLSearchParams(fields).toString(), stopAt: cb });
  }
  if (!res.next) throw new Error(`the provider did not send us back (status ${res.status}): ${res.text.slice(0, 300)}`);
  let back = res.next;
  if (tamperState) {
    const u = new URL(back);
    u.searchParams.set('state', tamperState);
    back = u.toString();
  }
  const callback = await client.request(back);
  const host = new URL(serverOrigin).host;
  return { callback, client, session: client.cookie(host, 'livevlm_session') };
}
