/**
 * The real server, spawned as `npm start` runs it, killed and restarted: the slow paths that
 * in-process tests cannot prove.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { eventually, freshDatabase, jobStatuses, testDatabaseUrl } from './support/db.js';
import { ServerProcess } from './support/server-process.js';

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
    const server = await ServerProcess.start({ DATABASE_URL: testDatabaseUrl(), ...env });
    servers.push(server);
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

  it('refuses to start on a bad config value, naming the variable', async () => {
    const server = ServerProcess.spawn({
      DATABASE_URL: testDatabaseUrl(),
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
      await fs.rm(dataDir, { recursive: true, force: true });
    });

    const startEmbedded = async () => {
      const server = await ServerProcess.start({ DATA_DIR: dataDir, HEURISTIC_DELAY_MS: '20' });
      servers.push(server);
      return server;
    };
    const getJob = async (server: ServerProcess, id: string) => {
      const res = await fetch(`${server.url}/jobs/${id}`);
      return (await res.json()) as { status: string; result: { merchant: { name: string } } };
    };

    it('keeps its data across a SIGKILL and restart, and stops its Postgres on SIGTERM', async () => {
      const first = await startEmbedded();
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
      const second = await startEmbedded();
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
