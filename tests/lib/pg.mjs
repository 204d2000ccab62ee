// pg.mjs - a real, throwaway PostgreSQL for node tests (what scripts/pg-test.sh does for the unit
// tests): initdb into a fresh temp dir owned by the OS user 'postgres' when the tests run as root
// (CI), a server on 127.0.0.1 on a free port, a database livevlm_test.
//
//   const pg = await startPostgres();      // { url, port, dir, stop }
//   ... startLivevlm({ args: ['--db', pg.url] }) ...
//   after(() => pg.stop());               // stops the server, removes the dir; safe twice
//
// Every wait is bounded (pg_ctl -w -t 30); a failure throws with the server's log tail.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

function pgBin() {
  if (process.env.LIVEVLM_PG_BIN) return process.env.LIVEVLM_PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    : [];
  versions.sort((a, b) => Number(a) - Number(b));
  if (versions.length === 0) {
    throw new Error('pg.mjs: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)');
  }
  return path.join(root, versions[versions.length - 1], 'bin');
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

// Run a server binary, as 'postgres' when we are root (initdb refuses root). Bounded by timeoutMs.
function asPg(bin, args, timeoutMs = 60000) {
  const [cmd, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs });
  return { ok: r.status === 0, out: `${r.stdout || ''}${r.stderr || ''}${r.error ? r.error.message : ''}` };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function tail(file, n = 20) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** Start a throwaway PostgreSQL; resolves to { url, port, dir, stop }. */
export async function startPostgres() {
  const bin = pgBin();
  // os.tmpdir() may sit under a directory 'postgres' cannot enter; /tmp it can.
  const dir = fs.mkdtempSync(path.join(process.env.LIVEVLM_PG_TMP || '/tmp', 'livevlm-pg-'));
  fs.chmodSync(dir, 0o700);
  if (isRoot()) {
    const r = spawnSync('chown', ['postgres:', dir]);
    if (r.status !== 0) throw new Error(`pg.mjs: chown postgres ${dir} failed`);
  }
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'postgres.log');
  let started = false;
  const stop = () => {
    if (started) {
      asPg(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', '-t', '20', 'stop'], 30000);
      started = false;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    let r = asPg(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync']);
    if (!r.ok) throw new Error(`pg.mjs: initdb failed: ${r.out.slice(-2000)}`);
    let port = 0;
    for (let attempt = 0; attempt < 3 && !started; attempt++) {
      port = await freePort();
      const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off ` +
        '-c full_page_writes=off -c max_connections=100';
      r = asPg(path.join(bin, 'pg_ctl'), ['-D', data, '-l', log, '-w', '-t', '30', '-o', opts, 'start'], 45000);
      started = r.ok;
    }
    if (!started) throw new Error(`pg.mjs: the PostgreSQL server did not start:\n${tail(log)}`);
    r = asPg(path.join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'livevlm_test']);
    if (!r.ok) throw new Error(`pg.mjs: createdb failed: ${r.out}`);
    return { url: `postgres://postgres@127.0.0.1:${port}/livevlm_test`, port, dir, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

