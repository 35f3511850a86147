/**
 * Database time for every comparison with stored timestamps: a real server whose own clock is
 * days off the database's (a preloaded Date, support/skewed-clock.ts) purges, and estimates,
 * by the database's clock.
 */
import { expect } from 'chai';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { getJob } from '../src/db/sql/jobs.js';
import { clientId, databaseUrl, eventually, freshDatabase } from './support/db.js';
import { tx } from './support/heuristics.js';
import { ServerProcess } from './support/server-process.js';

const DAY = 24 * 60 * 60 * 1000;

describe('a service whose clock is days off the database', function () {
  this.timeout(60_000);
  let db: Knex;
  const servers: ServerProcess[] = [];
  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.kill('SIGKILL')));
    await db.destroy();
  });

  async function start(skewMs: number, env: Record<string, string>) {
    const server = await ServerProcess.start(
      { DATABASE_URL: databaseUrl(db), RESULT_CACHE_TTL_MS: '0', ...env },
      30_000,
      { clockSkewMs: skewMs },
    );
    servers.push(server);
    server.apiKey = (await issueKey(db, 'a')).key;
    return server;
  }

  /** A finished job inserted as if it finished `ago` ms ago by the database's clock. */
  async function finishedAgo(description: string, agoMs: number): Promise<string> {
    const res = await db.raw<{ rows: { id: string }[] }>(
      `INSERT INTO jobs (id, client_id, transaction, max_attempts, status, result,
                         created_at, started_at, finished_at)
       SELECT gen_random_uuid(), ?, ?::jsonb, 3, 'succeeded', '{"merchant": null}', t, t, t
       FROM (SELECT now() - make_interval(secs => ? / 1000.0) AS t) ago
       RETURNING id`,
      [await clientId(db, 'a'), JSON.stringify(tx(description)), agoMs],
    );
    return res.rows[0]!.id;
  }

  it('8 days fast: purges what finished 8 days ago, keeps what finished just now and its idempotency key', async () => {
    const server = await start(8 * DAY, {
      JOB_RETENTION_DAYS: '7',
      PURGE_INTERVAL_MS: '1000',
      HEURISTIC_DELAY_MS: '0',
    });
    const submit = () =>
      fetch(`${server.url}/normalize_merchant`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${server.apiKey}`,
          'content-type': 'application/json',
          'idempotency-key': 'order-42',
        },
        body: JSON.stringify(tx('NETFLIX.COM')),
      });
    const first = (await (await submit()).json()) as { id: string };
    await eventually(async () => (await getJob(db, first.id, null))?.status === 'succeeded');
    const minutesAgo = await finishedAgo('a few minutes ago', 5 * 60 * 1000);
    // The control: once this is gone, a purge has run since the others finished.
    const old = await finishedAgo('eight days ago', 8 * DAY);
    await eventually(
      async () => (await getJob(db, old, null)) === undefined,
      10_000,
      'the purge of the 8-day-old job',
    );
    expect(await getJob(db, first.id, null)).to.include({ status: 'succeeded' });
    expect(await getJob(db, minutesAgo, null)).to.include({ status: 'succeeded' });
    const replay = await submit();
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(((await replay.json()) as { id: string }).id).to.equal(first.id);
  });

  it('8 days slow: Retry-After of a running job counts its time by the database clock', async () => {
    const server = await start(-8 * DAY, { HEURISTIC_DELAY_MS: '20000' });
    const res = await server.post('/normalize_merchant', tx('NETFLIX.COM'));
    const { id } = (await res.json()) as { id: string };
    await eventually(async () => (await getJob(db, id, null))?.status === 'running');
    const job = await server.get(`/jobs/${id}`);
    expect(((await job.json()) as { status: string }).status).to.equal('running');
    // Started an instant ago, and attempts are assumed to take 1 s until one is observed: had
    // the elapsed time been "8 days ago minus now", the estimate would be its maximum, 60.
    expect(Number(job.headers.get('retry-after'))).to.be.within(1, 2);
  });
});
