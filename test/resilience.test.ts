import { expect } from 'chai';
import type { Knex } from 'knex';
import { issueKey } from '../src/auth/keys.js';
import { revokeKey } from '../src/db/sql/clients.js';
import { expectProblem } from './support/problem.js';
import { eventually, insertPending } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, tx } from './support/heuristics.js';

/** Backends of this test's own database LISTENing for the service (never another test's). */
async function listeners(db: Knex): Promise<number[]> {
  const res = await db.raw<{ rows: { pid: number }[] }>(
    `SELECT pid FROM pg_stat_activity
     WHERE application_name = 'merchant-normalizer-listener' AND datname = current_database()`,
  );
  return res.rows.map((r) => r.pid);
}

describe('the service after its LISTEN connection is lost', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('catches up on reconnect: claims work, answers waiters and forgets keys whose NOTIFYs it missed', async () => {
    const gate = new Gate();
    gate.release('Fresh');
    // The service reaches Postgres through the proxy; the test's own pool goes around it.
    h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour), proxy: true });
    const proxy = h.proxy!;
    const held = (await h.http.post('/normalize_merchant').send(tx('Held')).expect(202)).body;
    await eventually(async () => h?.runner.busySlots === 1, 5000, 'the held attempt');
    const waiter = h.http.get(`/jobs/${held.id}?wait=30`).then((r) => r);
    await eventually(async () => h?.events.size === 1, 5000, 'the waiter to register');
    const other = await issueKey(h.db, 'b');
    await h.as(other.key).get('/jobs').expect(200); // its key is cached now

    // Lose the LISTEN connection, and keep it lost: the proxy refuses the reconnects.
    proxy.refuseNew(true);
    const pids = await listeners(h.db);
    expect(pids).to.have.length(1);
    await h.db.raw('SELECT pg_terminate_backend(pid) FROM unnest(?::int[]) AS pid', [pids]);
    await eventually(async () => (await listeners(h!.db)).length === 0, 5000, 'no listener');
    // What happens meanwhile sends NOTIFYs nobody hears.
    await h.store.cancelJob(held.id, null);
    const fresh = await insertPending(h.db, 'Fresh');
    expect(await revokeKey(h.db, other.keyId)).to.equal(true);
    await eventually(async () => proxy.refused > 0, 5000, 'a refused reconnect');
    expect((await h.store.getJob(fresh.id, null))?.status).to.equal('pending');

    proxy.refuseNew(false);
    const answered = await waiter;
    expect(answered.body.status).to.equal('canceled');
    await eventually(
      async () => (await h!.store.getJob(fresh.id, null))?.status === 'succeeded',
      5000,
      'the job inserted while deaf to be claimed',
    );
    await h.as(other.key).get('/jobs').expect(401);
  });
});

describe('the service with the database down', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('answers 503 problem+json with Retry-After, not 500, and readiness fails', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(async () => null), proxy: true });
    const proxy = h.proxy!;
    proxy.refuseNew(true);
    proxy.dropAll();
    // A well-formed key: checking it needs the database, which is down.
    const res = await h.anon
      .post('/normalize_merchant')
      .set('Authorization', `Bearer mn_0123456789ab_${'k'.repeat(43)}`)
      .send(tx('Netflix'))
      .expect(503);
    expectProblem(res, '/problems/service-unavailable', 503);
    expect(res.headers['retry-after']).to.equal('5');
    expect(res.body.detail).to.contain('nothing was stored');

    const ready = await h.anon.get('/readyz').expect(503);
    expect(ready.body.detail).to.contain('unreachable');
  });
});
