/**
 * The result cache (keyed by heuristic version + key, with a TTL) and single-flight (identical
 * keys in flight share one heuristic run).
 */
import { expect } from 'chai';
import { scopedCacheKey } from '../src/jobs/cache-scope.js';
import { issueKey } from '../src/auth/keys.js';
import { clientId, eventually } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';

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
    h = await startHarness({ heuristic, cacheTtlMs: 300 });
    const first = (await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body;
    await finished(first.id);
    const hit = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expect(hit.body.status).to.equal('succeeded');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const miss = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expect(miss.body.status).to.equal('pending');
    await finished(miss.body.id);
    expect(heuristic.calls).to.have.length(2);
  });

  it('misses when the heuristic version changed: keys carry the version', async () => {
    const heuristic = new TestHeuristic(echoAfter(0), true);
    h = await startHarness({ heuristic });
    const stale = { merchant: { name: 'From an older version' } };
    await h.db('results').insert({
      cache_key: 'test-0:Netflix',
      result: JSON.stringify(stale),
      expires_at: new Date(Date.now() + 3_600_000),
    });
    const miss = await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expect(miss.body.status).to.equal('pending');
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
    expect(second).to.include({ status: 'pending', attempts: 0 });
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
    // The other five wait, pending, for the leader; they take no slot.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(heuristic.calls).to.have.length(1);
    gate.release();
    const rows = await eventually(async () => {
      const r = await h!.db('jobs').whereIn('id', ids).select('status', 'attempts', 'result');
      return r.every((j) => j.status === 'succeeded') && r;
    });
    expect(heuristic.calls).to.have.length(1);
    expect(rows.map((r) => r.attempts).sort()).to.deep.equal([0, 0, 0, 0, 0, 1]);
    for (const row of rows) expect(row.result).to.deep.equal({ merchant: { name: 'Netflix' } });
    const metrics = (await h.http.get('/metrics').expect(200)).text;
    expect(metrics).to.match(/^merchant_result_cache_hits_total\{via="shared"\} 5$/m);
  });

  it('lets a waiting job compute the key itself when the leader fails', async () => {
    let calls = 0;
    const heuristic = new TestHeuristic(async (t) => {
      calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (calls === 1) throw new Error('first call fails');
      return { name: t.description };
    }, true);
    h = await startHarness({ heuristic, jobMaxAttempts: 1 });
    const submit = async () =>
      (await h!.http.post('/normalize_merchant').send(tx('Netflix')).expect(202)).body.id as string;
    const [a, b] = await Promise.all([submit(), submit()]);
    const statuses = await eventually(async () => {
      const r = await h!.db('jobs').whereIn('id', [a, b]).pluck('status');
      return r.every((s: string) => s === 'succeeded' || s === 'failed') && r.sort();
    }, 5000);
    expect(statuses).to.deep.equal(['failed', 'succeeded']);
    expect(heuristic.calls).to.have.length(2);
  });
});
