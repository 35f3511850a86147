/**
 * The real server, spawned as `npm start` runs it, killed and restarted: the slow paths that
 * in-process tests cannot prove.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { eventually, freshDatabase, indexOid, jobStatuses, databaseUrl } from './support/db.js';
import { processesWhose } from './support/procs.js';
import { ServerProcess } from './support/server-process.js';
import { issueKey } from '../src/auth/keys.js';
import { revokeKey } from '../src/db/sql/clients.js';
import { createKnex, migrationState } from '../src/db/knex.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const transaction = (i: number) => ({
  date: '2026-04-03',
  description: i % 2 ? `Payment Netflix APRIL*** ${i}` : `SQ *BLUE BOTTLE ${i}`,
  amount: i,
  reference: `ref-${i}`,
});

describe('server process (src/main.ts)', function () {
  this.timeout(90_000);
  let db: Knex;
  const servers: ServerProcess[] = [];

  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.kill('SIGKILL')));
    await db.destroy();
  });

  async function start(env: Record<string, string>) {
    // These tests follow every job through its own attempts: no result cache or single-flight.
    const server = await ServerProcess.start({
      DATABASE_URL: databaseUrl(db),
      RESULT_CACHE_TTL_MS: '0',
      ...env,
    });
    servers.push(server);
    server.apiKey = (await issueKey(db, 'a')).key;
    return server;
  }

  async function submit(server: ServerProcess, i: number): Promise<string> {
    const res = await server.post('/normalize_merchant', transaction(i));
    expect(res.status).to.equal(202);
    const body = (await res.json()) as { id: string };
    expect(res.headers.get('location')).to.equal(`/jobs/${body.id}`);
    return body.id;
  }

  const allSucceeded = (n: number) => async () => (await jobStatuses(db)).succeeded === n;

  it('loses nothing when killed with SIGKILL mid-attempt: after a restart every job succeeds', async () => {
    const fast = { JOB_LEASE_MS: '1000', RUNNER_POLL_MS: '200', RUNNER_CONCURRENCY: '4' };
    const first = await start({ ...fast, HEURISTIC_DELAY_MS: '20000' });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await submit(first, i));
    await eventually(async () => (await jobStatuses(db)).running === 4, 10_000, '4 running');

    expect(await first.kill('SIGKILL')).to.deep.equal({ code: null, signal: 'SIGKILL' });
    expect(await jobStatuses(db)).to.deep.equal({ running: 4, pending: 6 });
    const interrupted = (await db('jobs').where({ status: 'running' }).pluck('id')) as string[];
    // Submitted to an idle server, they were stored already running (no claim): such a job is
    // recovered by its lease like a claimed one.
    const startedAtInsert = await db('jobs')
      .where({ status: 'running' })
      .whereRaw('started_at = created_at')
      .count<{ count: string }[]>('* as count');
    expect(Number(startedAtInsert[0]?.count), 'interrupted jobs started at insert').to.be.above(0);

    const second = await start({ ...fast, HEURISTIC_DELAY_MS: '20' });
    await eventually(allSucceeded(10), 20_000, 'all 10 jobs to succeed');
    const rows = await db('jobs').select('id', 'attempts', 'result');
    expect(rows.map((r: { id: string }) => r.id)).to.have.members(ids);
    for (const row of rows as Array<{ id: string; attempts: number; result: unknown }>) {
      expect(row.attempts).to.equal(interrupted.includes(row.id) ? 2 : 1);
      expect(row.result)
        .to.have.nested.property('merchant.name')
        .that.is.oneOf(['Netflix', 'Blue Bottle Coffee']);
    }
    expect((await second.kill('SIGTERM')).code).to.equal(0);
  });

  it('runs every job exactly once with two processes on one database', async () => {
    const env = { HEURISTIC_DELAY_MS: '10-60', RUNNER_CONCURRENCY: '4' };
    const a = await start(env);
    const b = await start(env);
    const ids = await Promise.all(Array.from({ length: 80 }, (_, i) => submit(i % 2 ? a : b, i)));
    await eventually(allSucceeded(80), 30_000, 'all 80 jobs to succeed');

    const ranOn = (server: ServerProcess) =>
      server.logs
        .filter((l) => l.msg === 'job attempt' && l.outcome === 'succeeded')
        .map((l) => String(l.jobId));
    // A log line can trail its job's commit: stop both and read everything they wrote.
    for (const server of [a, b]) expect((await server.kill('SIGTERM')).code).to.equal(0);
    await Promise.all([a.closed, b.closed]);
    const onA = ranOn(a);
    const onB = ranOn(b);
    expect([...onA, ...onB]).to.have.members(ids); // each job once, none twice
    expect(onA).not.to.be.empty;
    expect(onB).not.to.be.empty;
    const attempts = (await db('jobs').distinct('attempts').pluck('attempts')) as number[];
    expect(attempts).to.deep.equal([1]);
  });

  /** A server with three jobs running, ready to be sent SIGTERM. */
  async function startWithThreeRunning(env: Record<string, string>) {
    const server = await start(env);
    for (let i = 0; i < 3; i++) await submit(server, i);
    await eventually(async () => (await jobStatuses(db)).running === 3, 10_000, '3 running');
    return server;
  }

  it('on SIGTERM lets short attempts finish and exits 0', async () => {
    const server = await startWithThreeRunning({
      HEURISTIC_DELAY_MS: '700',
      SHUTDOWN_GRACE_MS: '10000',
    });
    expect((await server.kill('SIGTERM')).code).to.equal(0);
    expect(await jobStatuses(db)).to.deep.equal({ succeeded: 3 });
  });

  it('on SIGTERM hands attempts that outlive the grace period back as pending', async () => {
    const server = await startWithThreeRunning({
      HEURISTIC_DELAY_MS: '30000',
      SHUTDOWN_GRACE_MS: '300',
    });
    expect((await server.kill('SIGTERM')).code).to.equal(0);
    expect(await jobStatuses(db)).to.deep.equal({ pending: 3 });
    const rows = await db('jobs').select('attempts', 'locked_by');
    for (const row of rows) expect(row).to.deep.equal({ attempts: 0, locked_by: null });
    expect(server.logs.some((l) => l.msg.startsWith('grace period over'))).to.equal(true);
  });

  it('logs one line per request and per attempt, with client and request id, never the key or description', async () => {
    const server = await start({ HEURISTIC_DELAY_MS: '0' });
    const description = 'Payment Netflix APRIL*** do-not-log-me';
    const res = await server.post('/normalize_merchant', {
      date: '2026-04-03',
      description,
      amount: 1,
    });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const attempt = await server.waitForLog((l) => l.msg === 'job attempt' && l.jobId === id);
    expect(attempt).to.include({ attempt: 1, outcome: 'succeeded' });
    expect(attempt.durationMs).to.be.a('number');
    expect(attempt.clientId).to.be.a('string');
    const request = await server.waitForLog((l) => l.msg === 'request' && l.method === 'POST');
    expect(request).to.include({ route: '/normalize_merchant', status: 202, client: 'a' });
    expect(request.durationMs).to.be.a('number');
    expect(request.requestId).to.equal(res.headers.get('x-request-id'));
    const output = server.output();
    expect(output).not.to.contain('do-not-log-me');
    expect(output).not.to.contain(server.apiKey.slice(16));
  });

  it('makes no API key by itself with DATABASE_URL', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-nokey-'));
    try {
      const server = await ServerProcess.start({
        DATABASE_URL: databaseUrl(db),
        DATA_DIR: dataDir,
      });
      servers.push(server);
      expect(await db('clients').count<{ count: string }[]>('*')).to.deep.equal([{ count: '0' }]);
      expect(await fs.readdir(dataDir)).to.deep.equal([]);
      expect((await server.get('/jobs')).status).to.equal(401);
    } finally {
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });

  it('runs the heuristic once for one key submitted to two processes at once (single-flight)', async () => {
    const env = {
      HEURISTIC_DELAY_MS: '1500',
      RESULT_CACHE_TTL_MS: '60000',
      RUNNER_CONCURRENCY: '4',
    };
    const [a, b] = await Promise.all([start(env), start(env)]);
    // Variants of one merchant's descriptor: the mock gives them one key.
    const ids = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const res = await (i % 2 ? a : b).post('/normalize_merchant', {
          date: '2026-04-03',
          description: `NETFLIX.COM ${1000 + i} Los Gatos CA`,
          amount: i,
        });
        expect(res.status).to.equal(202);
        return ((await res.json()) as { id: string }).id;
      }),
    );
    await eventually(allSucceeded(12), 20_000, 'all 12 jobs');
    const ran = () =>
      [...a.logs, ...b.logs].filter((l) => l.msg === 'job attempt' && l.outcome === 'succeeded');
    // The leader's log line may arrive just after its commit: stop both and read everything.
    for (const server of [a, b]) expect((await server.kill('SIGTERM')).code).to.equal(0);
    await Promise.all([a.closed, b.closed]);
    expect(ran(), 'heuristic runs').to.have.length(1);
    const rows = await db('jobs').whereIn('id', ids).select('attempts', 'result');
    expect(rows.map((r) => r.attempts).sort()).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    const netflix = { merchant: { name: 'Netflix', id: 'netflix' }, intermediaries: [] };
    for (const row of rows) expect(row.result).to.deep.equal(netflix);
  });

  /**
   * Starts a server on a database where 0012 is still to apply, with a transaction holding a
   * snapshot so that the index build waits at its end (still invalid), and SIGKILLs the server
   * there. Returns the build's backend, still running without its client, and the index's oid.
   */
  async function killDuringIndexBuild(): Promise<{
    building: number;
    oid: string;
    release: () => Promise<void>;
  }> {
    // 0012 builds an index CONCURRENTLY, outside a transaction: knex commits its lock row
    // before it starts and clears it after, so a start killed in between leaves the row set.
    await db.migrate.down({ name: '0012_batch_index_partial' });
    expect((await migrationState(db)).missing).to.deep.equal(['0012_batch_index_partial']);
    const blocker = createKnex(databaseUrl(db), 1);
    const snapshot = await blocker.transaction({ isolationLevel: 'repeatable read' });
    await snapshot.raw('SELECT count(*) FROM clients');
    const release = async () => {
      if (snapshot.isCompleted()) return;
      await snapshot.rollback();
      await blocker.destroy();
    };
    try {
      const first = ServerProcess.spawn({ DATABASE_URL: databaseUrl(db) });
      servers.push(first);
      const building = await eventually(
        async () => {
          const { rows } = await db.raw<{ rows: { pid: number; oid: string }[] }>(
            `SELECT pid, index_relid::text AS oid FROM pg_stat_progress_create_index
             WHERE datname = current_database() AND phase = 'waiting for old snapshots'`,
          );
          return rows[0];
        },
        30_000,
        'the index build to wait for the old snapshot',
      );
      expect(await knexLocked(), 'knex lock during the build').to.equal(1);
      await first.kill('SIGKILL');
      return { building: building.pid, oid: building.oid, release };
    } catch (err) {
      await release();
      throw err;
    }
  }

  it('finishes a migration a killed start left half-way, its index build ended unfinished', async () => {
    const { building, release } = await killDuringIndexBuild();
    try {
      // A crash of the whole host ends the build too; here it is ended alone.
      await db.raw('SELECT pg_terminate_backend(?)', [building]);
    } finally {
      await release();
    }
    expect(await knexLocked(), 'knex lock left by the killed start').to.equal(1);
    expect(await indexValid('jobs_batch_items_idx'), 'the build left invalid').to.equal(false);

    const second = await start({});
    expect(second.logs.some((l) => /a migration was interrupted/.test(String(l.msg)))).to.equal(
      true,
    );
    expect((await migrationState(db)).missing).to.deep.equal([]);
    expect(await knexLocked()).to.equal(0);
    expect(await indexValid('jobs_batch_items_idx')).to.equal(true);
    expect(await indexValid('jobs_batch_idx'), 'the old index dropped').to.equal(undefined);
  });

  it('finishes a migration a killed start left half-way, its index build still going on', async () => {
    const { oid, release } = await killDuringIndexBuild();
    // The killed start's build goes on without its client; the next start must not build the
    // same index beside it, nor drop it once it is done.
    const second = ServerProcess.spawn({ DATABASE_URL: databaseUrl(db) });
    servers.push(second);
    try {
      await second.waitForLog((l) => /index build of an earlier start/.test(String(l.msg)), 30_000);
    } finally {
      await release();
    }
    await second.waitForLog((l) => l.msg === 'listening', 30_000);
    expect((await migrationState(db)).missing).to.deep.equal([]);
    expect(await knexLocked()).to.equal(0);
    expect(await indexValid('jobs_batch_items_idx')).to.equal(true);
    expect(
      await indexOid(db, 'jobs_batch_items_idx'),
      'the index the killed start built, kept',
    ).to.equal(oid);
    expect(await indexValid('jobs_batch_idx'), 'the old index dropped').to.equal(undefined);
  });

  async function knexLocked(): Promise<number | undefined> {
    const row = await db('knex_migrations_lock').first<{ is_locked: number } | undefined>(
      'is_locked',
    );
    return row?.is_locked;
  }

  async function indexValid(name: string): Promise<boolean | undefined> {
    const { rows } = await db.raw<{ rows: { valid: boolean }[] }>(
      'SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass(?)',
      [name],
    );
    return rows[0]?.valid;
  }

  it('refuses to start on a bad config value, naming the variable', async () => {
    const server = ServerProcess.spawn({
      DATABASE_URL: databaseUrl(db),
      RUNNER_CONCURRENCY: 'lots',
      HEURISTIC_DELAY_MS: '5-1',
    });
    servers.push(server);
    const { code } = await server.exited;
    expect(code).to.equal(2);
    expect(server.stderr).to.contain('RUNNER_CONCURRENCY must be an integer');
    expect(server.stderr).to.contain('HEURISTIC_DELAY_MS');
    expect(server.stderr).not.to.match(/\bat .+\.(ts|js):\d+/); // a message, not a stack trace
  });

  describe('without DATABASE_URL (embedded Postgres)', () => {
    let dataDir: string;
    beforeEach(async () => {
      dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'merchant-embedded-'));
    });
    afterEach(async () => {
      await Promise.all(servers.splice(0).map((s) => s.kill('SIGKILL')));
      // A killed service leaves its embedded Postgres running: stop it too, or it lingers and
      // writes into the directory being removed (ENOTEMPTY).
      const pidFile = await fs
        .readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')
        .catch(() => '');
      const postgresPid = Number(pidFile.split('\n')[0]);
      if (postgresPid > 0 && alive(postgresPid)) {
        process.kill(postgresPid, 'SIGQUIT'); // immediate shutdown: it stops its children first
        await eventually(async () => !alive(postgresPid), 10_000, 'the embedded Postgres to exit');
      }
      await fs.rm(dataDir, { recursive: true, force: true });
    });

    /** Started on `dataDir`, with the key the first start wrote there (if any yet). */
    const startEmbedded = async () => {
      const server = await ServerProcess.start({ DATA_DIR: dataDir, HEURISTIC_DELAY_MS: '20' });
      servers.push(server);
      return server;
    };
    const withLocalKey = async (server: ServerProcess) => {
      server.apiKey = (await fs.readFile(path.join(dataDir, 'api-key'), 'utf8')).trim();
      return server;
    };
    const getJob = async (server: ServerProcess, id: string) => {
      const res = await server.get(`/jobs/${id}`);
      return (await res.json()) as { status: string; result: { merchant: { name: string } } };
    };

    it('creates a local API key on first start: a 0600 file under DATA_DIR, never logged', async () => {
      const server = await startEmbedded();
      const keyFile = path.join(dataDir, 'api-key');
      const key = (await fs.readFile(keyFile, 'utf8')).trim();
      expect(key).to.match(/^mn_[0-9a-f]{12}_[\w-]{43}$/);
      expect((await fs.stat(keyFile)).mode & 0o777).to.equal(0o600);
      const created = server.logs.find((l) => l.msg === 'created an API key for the local client');
      expect(created).to.include({ keyFile: path.resolve(keyFile), client: 'local' });
      expect(String(created?.usage)).to.contain(
        `Authorization: Bearer $(cat ${path.resolve(keyFile)})`,
      );
      expect(server.output()).not.to.contain(key);

      expect((await server.get('/jobs')).status).to.equal(401);
      server.apiKey = key;
      expect((await server.get('/jobs')).status).to.equal(200);

      // Revoked (or a reset database): the next start replaces the key in the file.
      const started = server.logs.find((l) => l.msg === 'embedded Postgres started');
      const embeddedDb = createKnex(String(started?.databaseUrl), 1);
      try {
        expect(await revokeKey(embeddedDb, key.slice(3, 15))).to.equal(true);
      } finally {
        await embeddedDb.destroy();
      }
      expect((await server.kill('SIGTERM')).code).to.equal(0);
      const again = await startEmbedded();
      const replaced = (await fs.readFile(keyFile, 'utf8')).trim();
      expect(replaced).not.to.equal(key);
      expect(again.logs.some((l) => l.msg === 'created an API key for the local client')).to.equal(
        true,
      );
      again.apiKey = replaced;
      expect((await again.get('/jobs')).status).to.equal(200);
    });

    it('`npm start` stops with its embedded Postgres on SIGTERM to npm, and binds 127.0.0.1', async () => {
      const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, PORT: '0' };
      delete env.DATABASE_URL;
      delete env.HOST;
      const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      const npmExited = once(npm, 'exit');
      let output = '';
      npm.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
      npm.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
      const started: number[] = [];
      try {
        const listening = await eventually(
          async () => {
            const line = output.split('\n').find((l) => l.includes('"msg":"listening"'));
            return line ? (JSON.parse(line) as { address: string; workerId: string }) : undefined;
          },
          60_000,
          '`npm start` to listen',
        );
        const servicePid = Number(listening.workerId.split(':')[1]);
        const pidFile = await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8');
        const postgresPid = Number(pidFile.split('\n')[0]);
        started.push(servicePid, postgresPid);
        expect(listening.address, 'HOST defaults to loopback with the embedded database').to.equal(
          '127.0.0.1',
        );
        expect(alive(servicePid) && alive(postgresPid)).to.equal(true);
        expect(servicePid).not.to.equal(npm.pid);

        npm.kill('SIGTERM'); // to npm only, as `kill <pid of npm start>` does
        await npmExited;
        await eventually(
          async () => !alive(servicePid) && !alive(postgresPid),
          30_000,
          'the service and its Postgres to stop',
        );
        expect(await processesWhose('cmdline', dataDir), output).to.deep.equal([]);
        expect(output).to.contain('"msg":"stopped"');
      } finally {
        for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
        if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
      }
    });

    it('keeps its data across a SIGKILL and restart, and stops its Postgres on SIGTERM', async () => {
      const first = await withLocalKey(await startEmbedded());
      const res = await first.post('/normalize_merchant', {
        date: '2026-04-03',
        description: 'Payment Netflix APRIL***',
        amount: 15.49,
      });
      expect(res.status).to.equal(202);
      const { id } = (await res.json()) as { id: string };
      const done = await eventually(async () => {
        const job = await getJob(first, id);
        return job.status === 'succeeded' && job;
      });
      expect(done.result.merchant.name).to.equal('Netflix');

      // SIGKILL leaves the embedded Postgres orphaned; the next start must take over cleanly.
      await first.kill('SIGKILL');
      const second = await withLocalKey(await startEmbedded());
      expect(second.logs.some((l) => l.msg === 'created an API key for the local client')).to.equal(
        false,
      );
      expect((await fetch(`${second.url}/readyz`)).status).to.equal(200);
      expect((await getJob(second, id)).status).to.equal('succeeded');

      expect((await second.kill('SIGTERM')).code).to.equal(0);
      const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
      const stillRunning = await fs.access(pidFile).then(
        () => true,
        () => false,
      );
      expect(stillRunning, 'postmaster.pid left behind').to.equal(false);
    });
  });
});
