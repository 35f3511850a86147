/**
 * A stalled database (alive, connected, answering nothing) and one that is not up yet at
 * start-up, simulated with a TCP proxy of the test's own between the service and Postgres.
 */
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { pino } from 'pino';
import type { Config } from '../src/config.js';
import { type Service, startService } from '../src/service.js';
import { databaseUrl, eventually, freshDatabase, rowCount } from './support/db.js';
import { type Harness, startHarness, testConfig } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { TcpProxy } from './support/tcp-proxy.js';

/** A pino logger whose lines land in `lines`. */
function capturingLogger() {
  const lines: Array<{ msg: string; [k: string]: unknown }> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

/** Runs `request` and measures how long its answer took. */
async function timed<T>(request: PromiseLike<T>): Promise<{ res: T; ms: number }> {
  const started = performance.now();
  const res = await request;
  return { res, ms: performance.now() - started };
}

describe('the service with a stalled database', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  const timeouts: Partial<Config> = {
    // The client gives up on an answer after 3.5 s: longer than /readyz may take.
    databaseStatementTimeoutMs: 2500,
    databaseAcquireTimeoutMs: 500,
  };

  it('answers 503 with Retry-After within bounded time, /readyz within 2 s, and recovers', async () => {
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      // No runner: requests alone use the pool, so who holds a connection is known.
      startRunner: false,
      proxy: true,
      poolMax: 3,
      config: timeouts,
    });
    const proxy = h.proxy!;
    const job = (await h.http.post('/normalize_merchant').send(tx('Before')).expect(202)).body;
    await h.http.get(`/jobs/${job.id}`).expect(200); // the key is verified and cached now
    const before = await rowCount(h.db, 'jobs');
    // The server processes behind the service's pool: those reached through the proxy.
    const backends = async () =>
      (
        await h!.db.raw<{ rows: { pid: number }[] }>(
          `SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'merchant-normalizer'
             AND client_port = ANY(?::int[])`,
          [proxy.upstreamPorts()],
        )
      ).rows.map((r) => r.pid);
    // Every pool connection open and idle, so requests during the stall get one and send on it.
    await Promise.all([1, 2, 3].map(() => h!.service.db.raw('SELECT pg_sleep(0.05)')));
    const servedBefore = await backends();
    expect(servedBefore).to.have.length(3);

    proxy.stall(true);
    // Readiness first, while the pool still holds connections that look healthy: its check
    // gets one and waits on it. Then more requests than the pool has connections: some hold
    // one, the others wait for one.
    const probes = [timed(h.anon.get('/readyz'))];
    await eventually(
      async () => h!.service.db.client.pool.numUsed() > 0,
      2000,
      'a check under way',
    );
    // Probes while that check is stuck share it.
    probes.push(...Array.from({ length: 4 }, () => timed(h!.anon.get('/readyz'))));
    const answers = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) =>
        timed(h!.http.post('/normalize_merchant').send(tx(`During ${i}`))),
      ),
      ...Array.from({ length: 3 }, () => timed(h!.http.get(`/jobs/${job.id}`))),
    ]);
    for (const { res, ms } of answers) {
      expect(res.status, res.text).to.equal(503);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.headers['retry-after']).to.equal('5');
      // Bounded by the timeouts (acquire 0.5 s, answer 3.5 s), not by the stall.
      expect(ms).to.be.below(8000);
    }
    const submits = answers.slice(0, 6).map((a) => a.res.body.detail as string);
    // A submit whose statement was sent but never answered cannot promise nothing was stored.
    expect(submits.some((d) => d.includes('may or may not have been stored'))).to.equal(true);
    for (const d of submits) expect(d).to.match(/nothing was stored|Idempotency-Key/);

    // /readyz answers within 2 s even though its check waits 3.5 s for the database.
    for (const p of await Promise.all(probes)) {
      expect(p.res.status).to.equal(503);
      expect(p.res.body.detail).to.contain('unreachable');
      expect(p.ms).to.be.below(2000);
    }
    expect((await timed(h.anon.get('/readyz'))).ms).to.be.below(2000);

    proxy.stall(false);
    // Connections left waiting on the stall were closed, not reused: the service recovers.
    await eventually(
      async () => (await h!.http.post('/normalize_merchant').send(tx('After'))).status === 202,
      10_000,
      'a submit to succeed again',
    );
    await h.anon.get('/readyz').expect(200);
    // A connection whose answer the client gave up on is closed, not handed out again (the
    // next statement would queue behind the lost one).
    await eventually(
      async () => !(await backends()).some((pid) => servedBefore.includes(pid)),
      5000,
      'the connections from before the stall to be closed',
    );
    // What the service said was not stored is not: those statements were never sent. (The
    // ones it was unsure about may have run when the stall ended, as the docs warn.)
    const promisedAbsent = answers
      .slice(0, 6)
      .map((a, i) => [a.res.body.detail as string, `During ${i}`] as const)
      .filter(([detail]) => detail.includes('nothing was stored'))
      .map(([, description]) => description);
    const stored = (
      await h.db.raw<{ rows: { d: string }[] }>(`SELECT transaction->>'description' AS d FROM jobs`)
    ).rows.map((r) => r.d);
    expect(stored).not.to.include.members(promisedAbsent.length > 0 ? promisedAbsent : ['-']);
    expect(before).to.equal(1);
  });
});

describe('start-up while the database is not answering', () => {
  let service: Service | undefined;
  let proxy: TcpProxy | undefined;
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  afterEach(async () => {
    await service?.stop();
    await proxy?.close();
    await db?.destroy();
    service = proxy = db = undefined;
  });

  const start = (waitMs: number, log: ReturnType<typeof capturingLogger>['log']) =>
    startService(
      testConfig(proxy!.urlFor(databaseUrl(db!)), {
        config: { databaseStartupWaitMs: waitMs, databaseAcquireTimeoutMs: 500 },
      }),
      { log, heuristic: new TestHeuristic(echoAfter(0)), listen: false },
    );

  it('retries with backoff, logging each try, and starts once the database answers', async () => {
    db = await freshDatabase();
    proxy = await TcpProxy.start(databaseUrl(db));
    proxy.refuseNew(true);
    const { log, lines } = capturingLogger();
    const starting = start(30_000, log);
    const retries = () =>
      lines.filter((l) => l.msg === 'database unreachable at start-up; retrying');
    await eventually(async () => retries().length >= 3, 10_000, 'three failed tries');
    proxy.refuseNew(false);
    service = await starting;
    expect(retries().map((l) => l.attempt)).to.deep.equal(
      Array.from({ length: retries().length }, (_, i) => i + 1),
    );
    const delays = retries().map((l) => l.retryInMs as number);
    expect(delays.slice(0, 3)).to.deep.equal([250, 500, 1000]);
    expect(lines.some((l) => l.msg === 'database reachable')).to.equal(true);
  });

  it('gives up after DATABASE_STARTUP_WAIT_MS with the last error', async () => {
    db = await freshDatabase();
    proxy = await TcpProxy.start(databaseUrl(db));
    proxy.refuseNew(true);
    const { log, lines } = capturingLogger();
    const failed = await start(1000, log).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(failed, 'start-up should have failed').to.be.instanceOf(Error);
    expect(
      lines.filter((l) => l.msg === 'database unreachable at start-up; retrying').length,
    ).to.be.at.least(2);
  });

  it('gives up at once on an error waiting cannot fix (no such database)', async () => {
    db = await freshDatabase();
    const url = new URL(databaseUrl(db));
    url.pathname = '/mnt_no_such_database';
    const { log, lines } = capturingLogger();
    const failed = await startService(
      testConfig(url.toString(), { config: { databaseStartupWaitMs: 30_000 } }),
      { log, heuristic: new TestHeuristic(echoAfter(0)), listen: false },
    ).then(
      () => undefined,
      (err: unknown) => err as Error & { code?: string },
    );
    expect(failed?.code).to.equal('3D000');
    expect(lines.filter((l) => l.msg.includes('retrying'))).to.have.length(0);
  });
});
