import { expect } from 'chai';
import { eventually } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { expectProblem } from './support/problem.js';
import { TestHeuristic, echoAfter } from './support/heuristics.js';

const valid = { date: '2026-04-03', description: 'SQ *BLUE BOTTLE', amount: 4.5, reference: 'r-1' };

describe('GET /jobs/:id', () => {
  let h: Harness;
  afterEach(() => h.stop());

  it('returns a pending job with Retry-After', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const { body: submitted } = await h.http.post('/normalize_merchant').send(valid).expect(202);
    const res = await h.http.get(`/jobs/${submitted.id}`).expect(200);
    expect(res.body).to.deep.equal(submitted);
    expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
    // Caches must revalidate (the job changes until it is finished); the ETag makes that cheap.
    expect(res.headers['cache-control']).to.equal('no-cache');
    expect(res.headers.etag).to.match(/^"[\w-]{27}"$/);
  });

  it('returns the finished job with its merchant, the reference echoed, and no Retry-After', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(5)) });
    const { body: submitted } = await h.http.post('/normalize_merchant').send(valid).expect(202);
    const res = await eventually(async () => {
      const r = await h.http.get(`/jobs/${submitted.id}`).expect(200);
      return r.body.status === 'succeeded' && r;
    });
    expect(res.body.result).to.deep.equal({ merchant: { name: 'SQ *BLUE BOTTLE' } });
    expect(res.body.transaction.reference).to.equal('r-1');
    expect(res.body).to.include({ attempts: 1, error: null });
    expect(Date.parse(res.body.finished_at)).to.be.at.least(Date.parse(res.body.started_at));
    expect(res.headers).not.to.have.property('retry-after');
  });

  it('returns 404 problem+json for an unknown id', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const res = await h.http.get('/jobs/6f1c1d57-8a52-4d8c-9d1e-3f0a2b9c4e11').expect(404);
    expectProblem(res, '/problems/not-found', 404);
  });

  for (const id of ['abc', '123', 'not-a-uuid-at-all-0000000000000000000', "1' OR '1'='1", '%00']) {
    it(`returns 404 (not 500) for the malformed id ${JSON.stringify(id)}`, async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const res = await h.http.get(`/jobs/${encodeURIComponent(id)}`).expect(404);
      expect(res.body.status).to.equal(404);
    });
  }
});

describe('routing and health', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
  });
  afterEach(() => h.stop());

  it('GET /healthz answers 200', async () => {
    const res = await h.http.get('/healthz').expect(200);
    expect(res.body).to.deep.equal({ status: 'ok' });
  });

  it('GET /readyz answers 200 when the database is reachable and migrated', async () => {
    const res = await h.http.get('/readyz').expect(200);
    expect(res.body.checks).to.deep.equal({ database: 'ok', migrations: 'ok' });
  });

  it('GET /readyz answers 503 when migrations are missing', async () => {
    await h.db.migrate.rollback(undefined, true);
    try {
      const res = await h.http.get('/readyz').expect(503);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.body.detail).to.match(/migrations/);
    } finally {
      await h.db.migrate.latest();
    }
  });

  it('answers 404 problem+json for an unknown route', async () => {
    const res = await h.http.get('/normalise').expect(404);
    expect(res.body).to.include({ type: '/problems/not-found', status: 404 });
    expect(res.headers['x-request-id']).to.be.a('string');
  });

  it('answers 405 with Allow for a wrong method on a known route', async () => {
    const res = await h.http.put('/normalize_merchant').send({}).expect(405);
    expect(res.headers.allow).to.contain('POST');
    expect(res.body).to.include({ type: '/problems/method-not-allowed', status: 405 });
  });
});
