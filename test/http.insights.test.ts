import { expect } from 'chai';
import { issueKey } from '../src/auth/keys.js';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { createAjv } from '../src/http/validation.js';
import { eventually, insertPending } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, tx } from './support/heuristics.js';
import { expectProblem } from './support/problem.js';

const ajv = createAjv();
function expectSchema(name: string, body: unknown) {
  const validate = ajv.getSchema(name);
  if (!validate) throw new Error(`no schema ${name}`);
  expect(validate(body), `${name}: ${ajv.errorsText(validate.errors)}`).to.equal(true);
}

/** Succeeds with the description as the merchant, after 30 ms; "bad …" fails for good. */
const heuristic = () =>
  new TestHeuristic(async (t) => {
    await new Promise((resolve) => setTimeout(resolve, 30));
    if (t.description.startsWith('bad')) throw new NonRetryableError('unreadable descriptor');
    return { name: t.description };
  });

interface Stats {
  window: string;
  bucket_seconds: number;
  counts: Record<string, number>;
  latency_ms: { p50: number | null; p95: number | null; p99: number | null };
  series: { start: string; succeeded: number; failed: number; canceled: number }[];
}

describe('GET /stats', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ heuristic: heuristic(), startRunner: false, jobMaxAttempts: 1 });
  });
  afterEach(() => h.stop());

  const stats = async (query = '') =>
    (await h.http.get(`/stats${query}`).expect(200)).body as Stats;

  it("counts the caller's pending jobs now, and what finished in the window by outcome", async () => {
    const { body: batch } = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('Netflix'), tx('Spotify'), tx('bad one')] })
      .expect(202);
    const { body: single } = await h.http.post('/normalize_merchant').send(tx('x')).expect(202);
    await h.http.delete(`/jobs/${single.id}`).expect(200);
    await insertPending(h.db, 'theirs', 1, 'b'); // another client's: never counted

    const before = await stats();
    expect(before.counts).to.deep.equal({
      pending: 3,
      running: 0,
      succeeded: 0,
      failed: 0,
      canceled: 1,
    });
    expect(before.latency_ms).to.deep.equal({ p50: null, p95: null, p99: null });

    h.runner.start();
    await eventually(async () => {
      const b = await h.http.get(`/batches/${batch.id}`).expect(200);
      return b.body.done === true;
    });
    const after = await stats();
    expectSchema('Stats', after);
    expect(after.counts).to.deep.include({ succeeded: 2, failed: 1, canceled: 1, pending: 0 });
    expect(after.window).to.equal('1h');
    expect(after.bucket_seconds).to.equal(60);
    expect(after.series).to.have.length(60);
    const sum = (k: 'succeeded' | 'failed' | 'canceled') =>
      after.series.reduce((n, b) => n + b[k], 0);
    expect([sum('succeeded'), sum('failed'), sum('canceled')]).to.deep.equal([2, 1, 1]);
    // Buckets are a minute apart, oldest first, and the last one holds now.
    const starts = after.series.map((b) => Date.parse(b.start));
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).to.equal(60_000);
    expect(Date.now() - starts.at(-1)!).to.be.within(0, 60_000 + 5_000);
    // Submit to result: at least the heuristic's 30 ms, and ordered.
    const { p50, p95, p99 } = after.latency_ms;
    expect(p50).to.be.at.least(30);
    expect(p95).to.be.at.least(p50!);
    expect(p99).to.be.at.least(p95!);
  });

  it('leaves out jobs that finished before the window, and offers longer windows', async () => {
    const old = await insertPending(h.db, 'old');
    await h
      .db('jobs')
      .where({ id: old.id })
      .update({
        status: 'succeeded',
        result: { merchant: null },
        created_at: new Date(Date.now() - 2 * 3_600_000 - 1000),
        finished_at: new Date(Date.now() - 2 * 3_600_000),
      });
    expect((await stats()).counts.succeeded).to.equal(0);
    const wide = await stats('?window=6h');
    expectSchema('Stats', wide);
    expect(wide.counts.succeeded).to.equal(1);
    expect(wide.bucket_seconds).to.equal(300);
    expect(wide.series).to.have.length(72);
    expect(wide.latency_ms.p50).to.be.closeTo(1000, 1);
    expect((await stats('?window=15m')).series).to.have.length(15);
    expect((await stats('?window=24h')).bucket_seconds).to.equal(1200);
  });

  it('answers 400 naming a window it does not offer, and 401 without a key', async () => {
    const res = await h.http.get('/stats?window=2h').expect(400);
    expectProblem(res, '/problems/invalid-parameter', 400);
    expect(res.body.errors).to.deep.equal([
      { parameter: 'window', detail: 'must be one of 15m, 1h, 6h, 24h' },
    ]);
    await h.anon.get('/stats').expect(401);
  });
});

describe('GET /batches', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ heuristic: heuristic(), startRunner: false });
  });
  after(() => h.stop());

  it("lists the caller's batches newest first, in cursor pages, as GET /batches/{id} shows them", async () => {
    const ids: string[] = [];
    for (const size of [1, 2, 3]) {
      const transactions = Array.from({ length: size }, (_, i) => tx(`t${i}`));
      const { body } = await h.http.post('/normalize_merchant/batch').send({ transactions });
      ids.push(body.id as string);
    }
    // Another client's batch, the newest of all: never listed for "a".
    const { key: keyB } = await issueKey(h.db, 'b');
    await h
      .as(keyB)
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('b')] });

    const first = await h.http.get('/batches?limit=2').expect(200);
    expectSchema('BatchList', first.body);
    expect(first.body.batches.map((b: { id: string }) => b.id)).to.deep.equal([ids[2], ids[1]]);
    expect(first.body.batches[0].size).to.equal(3);
    expect(first.body.batches[0].counts.pending).to.equal(3);
    expect(first.headers.link).to.equal(
      `</batches?limit=2&cursor=${first.body.next_cursor}>; rel="next"`,
    );
    const one = await h.http.get(`/batches/${ids[2]}`).expect(200);
    expect(first.body.batches[0]).to.deep.equal(one.body);

    const second = await h.http.get(`/batches?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.status).to.equal(200);
    expect(second.body.batches.map((b: { id: string }) => b.id)).to.deep.equal([ids[0]]);
    expect(second.body.next_cursor).to.equal(null);
    expect(second.headers).not.to.have.property('link');

    const bad = await h.http.get('/batches?cursor=bm9wZQ').expect(400);
    expectProblem(bad, '/problems/invalid-parameter', 400);
    await h.anon.get('/batches').expect(401);
  });
});

describe('GET / (the dashboard page and its files)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ heuristic: heuristic(), startRunner: false });
  });
  after(() => h.stop());

  it('serves the page without a key, under a CSP that allows no inline script or style', async () => {
    const page = await h.anon.get('/').expect(200);
    expect(page.headers['content-type']).to.match(/^text\/html/);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).to.contain("script-src 'self'");
    expect(csp).to.contain("style-src 'self'");
    expect(csp).to.contain("connect-src 'self'");
    expect(csp).to.contain("default-src 'none'");
    expect(csp).not.to.contain('unsafe');
    expect(page.headers['x-frame-options']).to.equal('DENY');
    expect(page.text).not.to.match(/<script>|<style|style="| on\w+="/); // nothing inline
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
    expect(assets).to.include.members(['/dashboard/app.js', '/dashboard/app.css']);
    for (const asset of assets.filter((a) => a.startsWith('/dashboard/'))) {
      const res = await h.anon.get(asset).expect(200);
      expect(res.headers['content-type']).to.match(/^(text\/(javascript|css)|image\/svg\+xml)/);
    }
  });

  it('serves nothing else from its directory', async () => {
    await h.anon.get('/dashboard/index.html').expect(404);
    await h.anon.get('/dashboard/..%2F..%2Fpackage.json').expect(404);
    await h.anon.get('/dashboard/nope.js').expect(404);
  });
});
