// oidc.test.mjs - single sign-on against a real OpenID provider (npm oidc-provider, tests/lib/oidc.mjs):
// the authorization code flow with PKCE walked by a cookie-keeping HTTP client through the
// provider's own login form; claims mapped to tenant and role; an organisation with no tenant gets
// a page saying so; a callback whose state does not match is 400; the provider's error is a
// readable page. Bearer JWTs signed with the provider's published keys (RS256 and ES256) work on
// the HTTP API and the WebSocket; expired, wrong-audience, tampered, alg none and unknown-kid ones
// are 401.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequestFrom, stopAll, waitUntil, T } from '../lib/harness.mjs';
import { startWithOidc, oidcSignIn, CookieClient } from '../lib/oidc.mjs';

const TO = { timeout: T(60000) };
let idp, srv;

before(async () => {
  ({ idp, srv } = await startWithOidc({
    tenant: { id: 'acme', name: 'Acme' },
    accounts: {
      alice: { email: 'alice@acme.test', email_verified: true, tenant: 'acme', roles: ['user', 'admin'] },
      bob: { email: 'bob@acme.test', email_verified: true, tenant: 'acme', roles: 'viewer' },
      carol: { email: 'carol@globex.test', email_verified: true, tenant: 'globex', roles: ['user'] },
    },
  }));
});
after(async () => { await stopAll(); await idp?.stop(); });

const bearer = (t) => ({ auth: false, headers: { Authorization: `Bearer ${t}` } });

async function me(session) {
  const r = await srv.request('/api/v1/me', { auth: false, headers: { Cookie: `livevlm_session=${session}` } });
  assert.equal(r.status, 200, r.text);
  return r.json();
}

test('code flow: the provider signs alice in; tenant and role come from her claims', TO, async () => {
  const { callback, session } = await oidcSignIn(srv.origin, 'alice');
  assert.equal(callback.status, 302, callback.text);
  assert.equal(callback.headers.location, '/');
  const sc = callback.headers['set-cookie'].find((c) => c.startsWith('livevlm_session='));
  assert.match(sc, /HttpOnly/);
  assert.match(sc, /SameSite=Lax/);
  assert.match(sc, /Max-Age=2592000/);
  assert.doesNotMatch(sc, /Secure/, 'plain http here');
  assert.match(session, /^[0-9a-f]{64}$/);
  const m = await me(session);
  assert.equal(m.user.name, 'alice@acme.test');
  assert.equal(m.role, 'admin', 'the highest role in the roles array');
  assert.equal(m.tenant.id, 'acme');
  assert.equal(m.credential, 'cookie');
  // signing in again finds the same user (linked by iss + sub)
  const again = await oidcSignIn(srv.origin, 'alice');
  assert.equal(again.callback.status, 302);
  assert.equal((await me(again.session)).user.id, m.user.id);
});

test('a string role claim: bob is a viewer', TO, async () => {
  const { callback, session } = await oidcSignIn(srv.origin, 'bob');
  assert.equal(callback.status, 302, callback.text);
  const m = await me(session);
  assert.equal(m.role, 'viewer');
  assert.equal(m.user.name, 'bob@acme.test');
});

test('an organisation without a tenant here gets a page saying so', TO, async () => {
  const { callback, session } = await oidcSignIn(srv.origin, 'carol');
  assert.equal(callback.status, 403);
  assert.match(callback.headers['content-type'], /text\/html/);
  assert.match(callback.text, /organisation &#39;globex&#39; has no tenant here; ask the admin/);
  assert.match(callback.text, /href="\/login"/);
  assert.equal(session, undefined);
});

test('a callback whose state is not the one started is 400, and a state is single use', TO, async () => {
  const { callback, session } = await oidcSignIn(srv.origin, 'alice', { tamperState: 'f'.repeat(32) });
  assert.equal(callback.status, 400);
  assert.match(callback.text, /state does not match/);
  assert.equal(session, undefined);
  // a replayed callback (same state and code) after a successful one
  const c = new CookieClient();
  const start = await c.request(`${srv.origin}/auth/oidc/login`);
  const state = new URL(start.headers.location).searchParams.get('state');
  assert.match(state, /^[0-9a-f]{32}$/);
  assert.equal(new URL(start.headers.location).searchParams.get('code_challenge_method'), 'S256');
  const r = await c.request(`${srv.origin}/auth/oidc/callback?code=x&state=${state}`);
  assert.notEqual(r.status, 302);
  const replay = await c.request(`${srv.origin}/auth/oidc/callback?code=x&state=${state}`);
  assert.equal(replay.status, 400);
  assert.match(replay.text, /expired or was already used/);
});

test("the provider's error comes back as a readable page with a way back", TO, async () => {
  const c = new CookieClient();
  const r = await c.request(`${srv.origin}/auth/oidc/callback?error=access_denied&error_description=${encodeURIComponent('<b>no</b> thanks')}`);
  assert.equal(r.status, 403);
  assert.match(r.headers['content-type'], /text\/html/);
  assert.match(r.text, /access denied/);
  assert.match(r.text, /&lt;b&gt;no&lt;\/b&gt; thanks/, 'escaped');
  assert.match(r.text, /<a href="\/login">/);
});

test('bearer JWTs signed with the provider\'s published keys: HTTP API and WebSocket', TO, async () => {
  // alice exists (linked by the sign-in above): accepted at once, with RS256 and ES256
  for (const key of ['rsa', 'ec']) {
    const t = idp.signJwt({ sub: 'alice', aud: 'livevlm', tenant: 'acme', roles: ['user'] }, { key });
    const r = await srv.request('/api/v1/me', bearer(t));
    assert.equal(r.status, 200, r.text);
    const m = r.json();
    assert.equal(m.credential, 'jwt');
    assert.equal(m.user.name, 'alice@acme.test');
    assert.equal(m.role, 'user', 'the token\'s role claim rules');
    assert.equal((await srv.request('/api/v1/models', bearer(t))).status, 200);
    // a bearer token cannot mint an API key that would outlive its exp
    const mk = await srv.request('/api/v1/keys', { ...bearer(t), method: 'POST', body: { name: 'k', scope: 'stream' } });
    assert.equal(mk.status, 403, mk.text);
    assert.equal(mk.json().error.code, 'sign_in_needed');
    const ws = await srv.connect({ auth: false, headers: { Authorization: `Bearer ${t}` } });
    ws.close();
  }
  // a subject seen for the first time: made off the loop, 503 "retry" meanwhile, then accepted
  const t = idp.signJwt({ sub: 'dave', aud: 'livevlm', tenant: 'acme', roles: 'user', preferred_username: 'dave' });
  const first = await srv.request('/api/v1/me', bearer(t));
  assert.equal(first.status, 503, first.text);
  assert.match(first.text, /first sign-in being set up; retry/);
  let ok;
  await waitUntil(async () => (ok = await srv.request('/api/v1/me', bearer(t))).status === 200,
    { timeoutMs: T(5000), what: 'dave made' });
  assert.equal(ok.json().user.name, 'dave');
});

test('expired, wrong-audience, wrong-issuer, tampered, alg none and unknown-kid tokens are 401', TO, async () => {
  const claims = { sub: 'alice', aud: 'livevlm', tenant: 'acme' };
  const now = Math.floor(Date.now() / 1000);
  const cases = {
    expired: [idp.signJwt({ ...claims, exp: now - 120 }), /expired/],
    'not yet valid': [idp.signJwt({ ...claims, nbf: now + 600 }), /not valid yet/],
    'wrong aud': [idp.signJwt({ ...claims, aud: 'someone-else' }), /audience/],
    'wrong iss': [idp.signJwt({ ...claims, iss: 'http://127.0.0.1:1' }), /issuer/],
  };
  const good = idp.signJwt(claims);
  const [h, p, s] = good.split('.');
  const evil = Buffer.from(JSON.stringify({ ...claims, iss: idp.issuer, exp: now + 300, roles: ['admin'] })).toString('base64url');
  cases.tampered = [`${h}.${evil}.${s}`, /signature/];
  cases['alg none'] = [`${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.${s}`, /alg/];
  cases['alg HS256'] = [`${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${p}.${s}`, /alg/];
  // each case from its own loopback address: failed credentials count per address (10 a minute)
  let host = 10;
  const from = (tok) => httpRequestFrom({ localAddress: `127.0.0.${host}`, port: srv.port, path: '/api/v1/me',
    headers: { Authorization: `Bearer ${tok}` } });
  for (const [name, [tok, why]] of Object.entries(cases)) {
    host++;
    const r = await from(tok);
    assert.equal(r.status, 401, `${name}: ${r.text}`);
    assert.match(r.text, why, name);
    await assert.rejects(srv.connect({ auth: false, localAddress: `127.0.0.${host}`,
      headers: { Authorization: `Bearer ${tok}` } }), (e) => e.status === 401, `${name} on the WebSocket`);
  }
  // a kid the provider does not publish: one refresh of the keys (503, retry), then 401
  host++;
  const unknown = idp.signJwt(claims, { header: { kid: 'not-published' } });
  const r1 = await from(unknown);
  assert.ok(r1.status === 503 || r1.status === 401, r1.text);
  let r2;
  await waitUntil(async () => (r2 = await from(unknown)).status === 401, { timeoutMs: T(5000), what: 'unknown kid refused' });
  assert.match(r2.text, /kid/);
});
