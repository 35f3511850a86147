import { expect } from 'chai';
import type { Response } from 'supertest';
import { scopedCacheKey } from '../src/jobs/cache-scope.js';
import { clientId, rowCount } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { expectProblem } from './support/problem.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';

describe('Idempotency-Key', () => {
  let h: Harness;
  let heuristic: TestHeuristic;
  beforeEach(async () => {
    heuristic = new TestHeuristic(echoAfter(0));
    h = await startHarness({ heuristic });
  });
  afterEach(() => h.stop());

  const count = (table: string) => rowCount(h.db, table);

  describe('on POST /normalize_merchant', () => {
    it('replays the same job, with no new work, for the same key and body', async () => {
      const first = await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', '"order-42"')
        .send(tx('Netflix'))
        .expect(202);
      expect(first.headers).not.to.have.property('idempotent-replayed');
      const again = await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', '"order-42"')
        // The same JSON with its keys in another order is the same body.
        .send({ amount: 12.5, description: 'Netflix', date: '2026-04-03' })
        .expect(202);
      expect(again.body.id).to.equal(first.body.id);
      expect(again.headers['idempotent-replayed']).to.equal('true');
      expect(again.headers.location).to.equal(first.headers.location);
      expect(await count('jobs')).to.equal(1);
      // A bare token is the same key as the quoted string.
      const bare = await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', 'order-42')
        .send(tx('Netflix'))
        .expect(202);
      expect(bare.body.id).to.equal(first.body.id);
      expect(heuristic.calls.length).to.be.at.most(1);
    });

    it('answers 422 for the same key with a different body, and stores nothing', async () => {
      await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', 'k1')
        .send(tx('Netflix'))
        .expect(202);
      const res = await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', 'k1')
        .send(tx('Spotify'))
        .expect(422);
      expectProblem(res, '/problems/idempotency-key-reused', 422);
      expect(res.body.detail).to.contain('different job request body');
      expect(await count('jobs')).to.equal(1);
    });

    it('creates exactly one job for concurrent duplicates', async () => {
      const answers = await Promise.all(
        Array.from({ length: 20 }, () =>
          h.http.post('/normalize_merchant').set('Idempotency-Key', 'race').send(tx('Uber')),
        ),
      );
      expect(answers.map((a) => a.status)).to.deep.equal(Array(20).fill(202));
      expect(new Set(answers.map((a) => a.body.id)).size).to.equal(1);
      expect(answers.filter((a) => a.headers['idempotent-replayed'] === 'true')).to.have.length(19);
      expect(await count('jobs')).to.equal(1);
    });

    it('rejects a malformed key with 400', async () => {
      for (const key of ['has space', 'x'.repeat(256), '"unterminated', 'quote"inside']) {
        const res = await h.http
          .post('/normalize_merchant')
          .set('Idempotency-Key', key)
          .send(tx('Netflix'))
          .expect(400);
        expectProblem(res, '/problems/invalid-idempotency-key', 400);
      }
      expect(await count('jobs')).to.equal(0);
    });

    it('validates the body before looking at the key', async () => {
      const res = await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', 'k2')
        .send({ ...tx('Netflix'), amount: 'x' })
        .expect(422);
      expectProblem(res, '/problems/validation-error', 422);
      await h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', 'k2')
        .send(tx('Netflix'))
        .expect(202);
    });
  });

  describe('on POST /normalize_merchant/batch', () => {
    const body = { transactions: [tx('A'), tx('B'), tx('C')] };

    it('replays the same batch and job ids; a different body is 422', async () => {
      const first = await h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'file.csv#0')
        .send(body)
        .expect(202);
      const again = await h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'file.csv#0')
        .send(body);
      expect(again.status).to.equal(first.status);
      expect(again.body.id).to.equal(first.body.id);
      expect(again.body.job_ids).to.deep.equal(first.body.job_ids);
      expect(again.headers['idempotent-replayed']).to.equal('true');

      const other = await h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'file.csv#0')
        .send({ transactions: [tx('A'), tx('B')] })
        .expect(422);
      expectProblem(other, '/problems/idempotency-key-reused', 422);
      expect(await count('batches')).to.equal(1);
      expect(await count('jobs')).to.equal(3);
    });

    it('creates exactly one batch for concurrent duplicates', async () => {
      const answers = await Promise.all(
        Array.from({ length: 10 }, () =>
          h.http.post('/normalize_merchant/batch').set('Idempotency-Key', 'race').send(body),
        ),
      );
      expect(new Set(answers.map((a) => a.body.id)).size).to.equal(1);
      expect(await count('batches')).to.equal(1);
      expect(await count('jobs')).to.equal(3);
    });

    it('keeps job keys and batch keys apart', async () => {
      await h.http.post('/normalize_merchant').set('Idempotency-Key', 'same').send(tx('A'));
      await h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'same')
        .send(body)
        .expect(202);
      expect(await count('jobs')).to.equal(4);
    });
  });
});

describe('an idempotent replay answers exactly as the original did', () => {
  // The runner is off, so nothing about the job or batch changes between the two requests: the
  // replay must then be the original answer, status and body, plus Idempotent-Replayed.
  let h: Harness;
  let heuristic: TestHeuristic;
  beforeEach(async () => {
    heuristic = new TestHeuristic(echoAfter(0), true);
    h = await startHarness({ heuristic, startRunner: false });
  });
  afterEach(() => h.stop());

  /** An answer as a client sees it, minus what may differ between any two requests. */
  const answer = (res: Response) => ({
    status: res.status,
    body: res.body as unknown,
    location: res.headers.location,
    contentLocation: res.headers['content-location'],
    etag: res.headers.etag,
    retryAfter: res.headers['retry-after'],
    preferenceApplied: res.headers['preference-applied'],
  });

  /** Sends `send()` twice; the second must be marked a replay and otherwise answer the same. */
  async function expectSameTwice(send: () => PromiseLike<Response>) {
    const original = await send();
    expect(original.headers).not.to.have.property('idempotent-replayed');
    const replay = await send();
    expect(replay.headers['idempotent-replayed']).to.equal('true');
    expect(answer(replay)).to.deep.equal(answer(original));
    return original;
  }

  /** "Netflix" answered in the result cache, as an earlier job would have left it. */
  async function cacheNetflix() {
    await h.db('results').insert({
      cache_key: scopedCacheKey('client', heuristic, tx('Netflix'), await clientId(h.db, 'a')),
      result: JSON.stringify({ merchant: { name: 'Netflix' } }),
      expires_at: new Date(Date.now() + 3_600_000),
    });
  }

  it('a pending job: 202, the same body', async () => {
    const first = await expectSameTwice(() =>
      h.http.post('/normalize_merchant').set('Idempotency-Key', 'p').send(tx('Netflix')),
    );
    expect(first.status).to.equal(202);
    expect(first.body.status).to.equal('pending');
  });

  it('a job answered from the result cache at submit: 202, the same finished job', async () => {
    await cacheNetflix();
    const first = await expectSameTwice(() =>
      h.http.post('/normalize_merchant').set('Idempotency-Key', 'c').send(tx('Netflix')),
    );
    expect(first.status).to.equal(202);
    expect(first.body.status).to.equal('succeeded');
  });

  it('a finished job under Prefer: wait: 200, the same body and Content-Location', async () => {
    await cacheNetflix();
    const first = await expectSameTwice(() =>
      h.http
        .post('/normalize_merchant')
        .set('Idempotency-Key', 'w')
        .set('Prefer', 'wait=5')
        .send(tx('Netflix')),
    );
    expect(first.status).to.equal(200);
  });

  it('a pending batch: 202, the same body with the same job ids', async () => {
    const first = await expectSameTwice(() =>
      h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'b')
        .send({ transactions: [tx('A'), tx('B'), tx('C')] }),
    );
    expect(first.status).to.equal(202);
    expect(first.body.job_ids).to.have.length(3);
  });

  it('a batch partly answered from the result cache: 202, the same counts and timestamps', async () => {
    await cacheNetflix();
    const first = await expectSameTwice(() =>
      h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'bc')
        .send({ transactions: [tx('A'), tx('Netflix'), tx('B')] }),
    );
    expect(first.status).to.equal(202);
    expect(first.body.counts).to.include({ pending: 2, succeeded: 1 });
  });

  it('a batch done at submit under Prefer: wait: 200, the same body', async () => {
    await cacheNetflix();
    const first = await expectSameTwice(() =>
      h.http
        .post('/normalize_merchant/batch')
        .set('Idempotency-Key', 'bw')
        .set('Prefer', 'wait=5')
        .send({ transactions: [tx('Netflix'), tx('Netflix', { reference: 'again' })] }),
    );
    expect(first.status).to.equal(200);
    expect(first.body).to.include({ done: true, finished: 2 });
  });
});

describe('on POST /normalize_merchant with the result cache off (the insert without lookup)', () => {
  let off: Harness;
  beforeEach(async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    off = await startHarness({ heuristic, cacheTtlMs: 0, startRunner: false });
  });
  afterEach(() => off.stop());

  it('stores the job pending and appends no event, as a cache miss does', async () => {
    const res = await off.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
    expect(res.body).to.include({ status: 'pending', result: null, attempts: 0 });
    const row = await off.db('jobs').where({ id: res.body.id }).first();
    expect(row).to.include({
      status: 'pending',
      cache_key: null,
      result: null,
      started_at: null,
      finished_at: null,
      idempotency_key: null,
    });
    expect(await rowCount(off.db, 'job_events')).to.equal(0);
  });

  it('replays the same job for the same key and body; another body is 422', async () => {
    const first = await off.http
      .post('/normalize_merchant')
      .set('Idempotency-Key', 'off-1')
      .send(tx('Netflix'))
      .expect(202);
    const again = await off.http
      .post('/normalize_merchant')
      .set('Idempotency-Key', 'off-1')
      .send(tx('Netflix'))
      .expect(202);
    expect(again.body).to.deep.equal(first.body);
    expect(again.headers['idempotent-replayed']).to.equal('true');
    const other = await off.http
      .post('/normalize_merchant')
      .set('Idempotency-Key', 'off-1')
      .send(tx('Spotify'))
      .expect(422);
    expectProblem(other, '/problems/idempotency-key-reused', 422);
    expect(await rowCount(off.db, 'jobs')).to.equal(1);
  });

  it('creates exactly one job for concurrent duplicates', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        off.http.post('/normalize_merchant').set('Idempotency-Key', 'race').send(tx('Uber')),
      ),
    );
    expect(answers.map((a) => a.status)).to.deep.equal(Array(20).fill(202));
    expect(new Set(answers.map((a) => a.body.id)).size).to.equal(1);
    expect(await rowCount(off.db, 'jobs')).to.equal(1);
  });
});
