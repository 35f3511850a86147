/**
 * The result cache (keyed by heuristic version + key, with a TTL) and single-flight (identical
 * keys in flight share one heuristic run).
 */
import { expect } from 'chai';
import supertest from 'supertest';
import { issueKey } from '../src/auth/keys.js';
import { type Transaction, cacheKeyOf } from '../src/heuristic/types.js';
import { scopedCacheKey } from '../src/jobs/cache-scope.js';
import { createLogger } from '../src/log.js';
import { startService } from '../src/service.js';
import { clientId, databaseUrl, eventually } from './support/db.js';
import { type Harness, startHarness, testConfig } from './support/harness.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';

/**
 * A submit the cache did not answer: stored to be computed, queued (pending) or, with a slot
 * free here, started at once (running, its first attempt); no result either way.
 */
function expectMiss(job: { status: string; result?: unknown; attempts?: number }, what = 'a miss') {
  expect(job.result ?? null, what).to.equal(null);
  const started = job.status === 'running';
  expect(job.status, what).to.be.oneOf(['pending', 'running']);
  expect(job.attempts, what).to.equal(started ? 1 : 0);
}

describe('result cache', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  const finished = async (id: string) =>
    eventually(async () => {
      const res = await h!.http.get(`/jobs/${id}`).expect(200);
      return res.body.status === 'succeeded' && res.body;
    });

  it('completes a submit whose key is cached at once, without calling the heuristic', async () => {
    const heuristic = new TestHeuristic(echoAfter(0), true);
    h = await startHarness({ heuristic });
    const first = (await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body;
    const done = await finished(first.id);
    expect(heuristic.calls).to.have.length(1);

    const again = await h.http
      .post('/normalize_merchant')
      .send(tx('Netflix', { amount: 99 }))
      .expect(202);
    expect(again.body).to.include({ status: 'succeeded', attempts: 0 });
    expect(again.body.result).to.deep.equal(done.result);
    expect(again.headers['retry-after'], 'nothing to wait for').to.equal(undefined);

    const batch = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('Netflix'), tx('Spotify'), tx('Netflix')] })
      .expect(202);
    expect(batch.body.counts).to.include({ succeeded: 2, pending: 1 });
    await eventually(async () => {
      const b = await h!.http.get(`/batches/${batch.body.id}`).expect(200);
      return b.body.done;
    });
    expect(heuristic.calls.map((c) => c.description)).to.deep.equal(['Netflix', 'Spotify']);

    const metrics = (await h.http.get('/metrics').expect(200)).text;
    expect(metrics).to.match(/^merchant_result_cache_hits_total\{via="submit"\} 3$/m);
  });

  it('forgets an answer after its TTL: the next submit runs the heuristic again', async () => {
    const heuristic = new TestHeuristic(echoAfter(0), true);
    const ttlMs = 2000;
    h = await startHarness({ heuristic, cacheTtlMs: ttlMs });
    const first = (await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body;
    await finished(first.id);
    const hit = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expect(hit.body.status).to.equal('succeeded');
    const [entry] = await h.db
      .raw<{ rows: { ttl_ms: string }[] }>(
        `SELECT extract(epoch FROM expires_at - created_at) * 1000 AS ttl_ms FROM results`,
      )
      .then((r) => r.rows);
    expect(Number(entry?.ttl_ms)).to.equal(ttlMs);
    // By the database's clock, which is the one expiry is judged by.
    await eventually(
      async () => {
        const res = await h!.db.raw<{ rows: { expired: boolean }[] }>(
          `SELECT bool_and(expires_at <= now()) AS expired FROM results`,
        );
        return res.rows[0]?.expired;
      },
      5000,
      'the cached answer to expire',
    );
    const miss = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expectMiss(miss.body);
    await finished(miss.body.id);
    expect(heuristic.calls).to.have.length(2);
  });

  it('misses when the heuristic version changed: keys carry the version', async () => {
    const heuristic = new TestHeuristic(echoAfter(0), true);
    h = await startHarness({ heuristic });
    const stale = { merchant: { name: 'From an older version' } };
    // What the previous version of this heuristic would have stored for the same transaction.
    const previous = { version: 'test-0', key: (t: Transaction) => heuristic.key(t) };
    await h.db('results').insert({
      cache_key: cacheKeyOf(previous, tx('Netflix')),
      result: JSON.stringify(stale),
      expires_at: new Date(Date.now() + 3_600_000),
    });
    const miss = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expectMiss(miss.body);
    expect((await finished(miss.body.id)).result).to.deep.equal({ merchant: { name: 'Netflix' } });
    expect(heuristic.calls).to.have.length(1);

    // The same entry under this version's key (scoped to client "a", RESULT_CACHE_SCOPE's
    // default) is a hit.
    await h.db('results').insert({
      cache_key: scopedCacheKey('client', heuristic, tx('Spotify'), await clientId(h.db, 'a')),
      result: JSON.stringify(stale),
      expires_at: new Date(Date.now() + 3_600_000),
    });
    const hit = await h.http.post('/normalize_merchant').send(tx('Spotify')).expect(202);
    expect(hit.body).to.include({ status: 'succeeded' });
    expect(hit.body.result).to.deep.equal(stale);
    expect(heuristic.calls).to.have.length(1);
  });

  it('keeps versions apart on one database: a new version computes again, the old one still hits', async () => {
    const v1 = new TestHeuristic(async (t) => ({ name: `${t.description} by v1` }), true, 'v1');
    h = await startHarness({ heuristic: v1 });
    const submit = (agent: supertest.Agent) =>
      agent.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    const first = (await submit(h.http)).body as { id: string };
    expect((await finished(first.id)).result).to.deep.equal({
      merchant: { name: 'Netflix by v1' },
    });
    expect((await submit(h.http)).body.status, 'v1 hits its own answer').to.equal('succeeded');
    // v2 is deployed beside it; v1 runs no more jobs (its API still answers).
    await h.runner.stop(0);
    const v2 = new TestHeuristic(async (t) => ({ name: `${t.description} by v2` }), true, 'v2');
    const next = await startService(testConfig(databaseUrl(h.db)), {
      log: createLogger('silent'),
      heuristic: v2,
      listen: false,
    });
    try {
      const asV2 = supertest.agent(next.app.callback()).set('Authorization', `Bearer ${h.key.key}`);
      const miss = (await submit(asV2)).body as { id: string; status: string };
      expectMiss(miss, "v1's answer is not v2's");
      expect((await finished(miss.id)).result).to.deep.equal({
        merchant: { name: 'Netflix by v2' },
      });
      const hitV2 = (await submit(asV2)).body;
      expect(hitV2).to.include({ status: 'succeeded', attempts: 0 });
      expect(hitV2.result).to.deep.equal({ merchant: { name: 'Netflix by v2' } });
      const hitV1 = (await submit(h.http)).body;
      expect(hitV1).to.include({ status: 'succeeded', attempts: 0 });
      expect(hitV1.result).to.deep.equal({ merchant: { name: 'Netflix by v1' } });
      expect(v1.calls).to.have.length(1);
      expect(v2.calls).to.have.length(1);
    } finally {
      await next.stop();
    }
  });

  it('caches nothing for a heuristic whose key is null', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    h = await startHarness({ heuristic });
    for (let i = 0; i < 2; i++) {
      const job = (await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body;
      await finished(job.id);
    }
    expect(heuristic.calls).to.have.length(2);
    expect(await h.db('results').count<{ count: string }[]>('*')).to.deep.equal([{ count: '0' }]);
  });
});

describe('result cache scope', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  /** Client "a" gets Netflix computed, then client "b" submits Netflix too. */
  async function secondClientSubmits(heuristic: TestHeuristic) {
    const first = (await h!.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body;
    await eventually(
      async () => (await h!.http.get(`/jobs/${first.id}`)).body.status === 'succeeded',
    );
    const b = await issueKey(h!.db, 'b');
    const second = await h!.as(b.key).post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expect(heuristic.calls).to.have.length(1);
    return { b, second: second.body };
  }

  it("client (the default): one client never gets another client's answer, nor waits on its work", async () => {
    const heuristic = new TestHeuristic(echoAfter(0), true);
    h = await startHarness({ heuristic });
    const { b, second } = await secondClientSubmits(heuristic);
    expectMiss(second);
    await eventually(
      async () => (await h!.as(b.key).get(`/jobs/${second.id}`)).body.status === 'succeeded',
    );
    expect(heuristic.calls).to.have.length(2);
    expect(await h.db('results').count<{ count: string }[]>('*')).to.deep.equal([{ count: '2' }]);
  });

  it('client: identical keys of two clients in flight at once are two heuristic runs', async () => {
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour, true);
    h = await startHarness({ heuristic });
    const b = await issueKey(h.db, 'b');
    await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    await h.as(b.key).post('/normalize_merchant').send(tx('Netflix')).expect(202);
    await eventually(async () => heuristic.running === 2, 5000, 'both clients computing');
    gate.release();
    await eventually(async () => (await h!.db('jobs').where({ status: 'succeeded' })).length === 2);
  });

  it("global: another client's submit is answered from the cache at once", async () => {
    const heuristic = new TestHeuristic(echoAfter(0), true);
    h = await startHarness({ heuristic, config: { resultCacheScope: 'global' } });
    const { second } = await secondClientSubmits(heuristic);
    expect(second).to.include({ status: 'succeeded', attempts: 0 });
    expect(second.result).to.deep.equal({ merchant: { name: 'Netflix' } });
  });
});

describe('single-flight', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('runs the heuristic once for identical keys in flight; the others share its answer', async () => {
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour, true);
    h = await startHarness({ heuristic });
    const ids = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const res = await h!.http
          .post('/normalize_merchant')
          .send(tx('Netflix', { reference: `r${i}` }))
          .expect(202);
        return res.body.id as string;
      }),
    );
    await eventually(async () => heuristic.calls.length === 1 && heuristic.running === 1);
    // The other five wait, pending, for the leader; they take no slot. Shown once the runner
    // has claimed past them (a job submitted after them, free to run, has finished: claims take
    // the oldest due job first) and holds no attempt but the leader's.
    gate.release('Spotify');
    const later = (await h.http.post('/normalize_merchant').send(tx('Spotify')).expect(202)).body;
    await eventually(async () => {
      const others = await h!.db('jobs').whereIn('id', ids).where({ status: 'pending' });
      return (
        (await h!.db('jobs').where({ id: later.id }).first())?.status === 'succeeded' &&
        h!.runner.busySlots === 1 &&
        others.length === 5 &&
        others.every((j) => j.locked_by === null)
      );
    });
    const netflixCalls = () => heuristic.calls.filter((c) => c.description === 'Netflix');
    expect(netflixCalls()).to.have.length(1);
    gate.release();
    const rows = await eventually(async () => {
      const r = await h!.db('jobs').whereIn('id', ids).select('status', 'attempts', 'result');
      return r.every((j) => j.status === 'succeeded') && r;
    });
    expect(netflixCalls()).to.have.length(1);
    expect(rows.map((r) => r.attempts).sort()).to.deep.equal([0, 0, 0, 0, 0, 1]);
    for (const row of rows) expect(row.result).to.deep.equal({ merchant: { name: 'Netflix' } });
    const metrics = (await h.http.get('/metrics').expect(200)).text;
    expect(metrics).to.match(/^merchant_result_cache_hits_total\{via="shared"\} 5$/m);
  });

  it('lets a waiting job compute the key itself when the leader fails', async () => {
    let failLeader!: () => void;
    const leaderFails = new Promise<void>((resolve) => (failLeader = resolve));
    const heuristic = new TestHeuristic(async (t, _signal, call) => {
      if (call === 1) {
        await leaderFails;
        throw new Error('first call fails');
      }
      return { name: t.description };
    }, true);
    h = await startHarness({ heuristic, jobMaxAttempts: 1 });
    const submit = async () =>
      (await h!.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body.id as string;
    const [a, b] = await Promise.all([submit(), submit()]);
    // One computes the key; the other, submitted meanwhile, waits for it. Then the leader fails.
    await eventually(async () => heuristic.running === 1, 5000, 'the leader to start');
    failLeader();
    const statuses = await eventually(async () => {
      const r = await h!.db('jobs').whereIn('id', [a, b]).pluck('status');
      return r.every((s: string) => s === 'succeeded' || s === 'failed') && r.sort();
    }, 5000);
    expect(statuses).to.deep.equal(['failed', 'succeeded']);
    expect(heuristic.calls).to.have.length(2);
  });
});
