/**
 * UUIDv7 ids, and `410 Gone` for ids past the retention period: an expired id must not look
 * like a typo.
 */
import { expect } from 'chai';
import { v4, v7 } from 'uuid';
import { createdAtOf } from '../src/ids.js';
import { GONE_MARGIN_MS } from '../src/jobs/gone.js';
import { purgeFinishedJobs } from '../src/db/sql/jobs.js';
import { insertJob } from '../src/db/sql/submits.js';
import { clientId } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { expectProblem } from './support/problem.js';

const DAY = 24 * 60 * 60 * 1000;
const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A UUIDv7 made `ms` ago. */
const madeAgo = (ms: number) => v7({ msecs: Date.now() - ms });

describe('job and batch ids (UUIDv7)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
  });
  after(() => h.stop());

  it('gives new jobs and batches UUIDv7 ids that carry their creation time, in order', async () => {
    const { body: job } = await h.http.post('/normalize_merchant').send(tx('A')).expect(202);
    const { body: batch } = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('B'), tx('C'), tx('D')] })
      .expect(202);
    for (const id of [job.id, batch.id, ...batch.job_ids]) expect(id).to.match(V7);
    const skew = Math.abs(
      (createdAtOf(job.id)?.getTime() ?? 0) - Date.parse(job.created_at as string),
    );
    expect(skew, 'id time vs created_at (ms)').to.be.below(5000);
    // Made in submission order, and distinct within one batch.
    const ids = [job.id, ...batch.job_ids] as string[];
    expect([...ids].sort()).to.deep.equal(ids);
    expect(new Set(ids).size).to.equal(4);
  });

  it('reads no time from ids that are not v7', () => {
    expect(createdAtOf(v4())).to.equal(undefined);
    expect(createdAtOf('not-an-id')).to.equal(undefined);
    expect(createdAtOf(madeAgo(DAY))?.getTime()).to.be.closeTo(Date.now() - DAY, 1000);
  });
});

describe('410 Gone past retention', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      config: { jobRetentionMs: 7 * DAY },
    });
  });
  afterEach(() => h.stop());

  const old = () => madeAgo(7 * DAY + GONE_MARGIN_MS + 60_000);

  it('answers 410 naming the retention period for a missing job id older than it', async () => {
    const id = old();
    const res = await h.http.get(`/jobs/${id}`).expect(410);
    expectProblem(res, '/problems/gone', 410);
    expect(res.body.retention_days).to.equal(7);
    expect(res.body.detail).to.contain(`Job ${id} was created at`);
    expect(res.body.detail).to.contain('retention period of 7 days');
    expectProblem(await h.http.get(`/jobs/${id}?wait=1`).expect(410), '/problems/gone', 410);
    expectProblem(await h.http.delete(`/jobs/${id}`).expect(410), '/problems/gone', 410);
  });

  it('answers 410 for a missing batch id older than it, and for its results', async () => {
    const id = old();
    const res = await h.http.get(`/batches/${id}`).expect(410);
    expectProblem(res, '/problems/gone', 410);
    expect(res.body.detail).to.contain(`Batch ${id} was created at`);
    expectProblem(await h.http.get(`/batches/${id}/results`).expect(410), '/problems/gone', 410);
  });

  it('answers 404 for a recent, a v4 or a malformed missing id', async () => {
    // Within retention (plus the margin for clock skew): it cannot have been purged yet.
    for (const id of [madeAgo(0), madeAgo(7 * DAY + GONE_MARGIN_MS - 60_000), v4(), 'nope']) {
      expectProblem(await h.http.get(`/jobs/${id}`).expect(404), '/problems/not-found', 404);
      expectProblem(await h.http.get(`/batches/${id}`).expect(404), '/problems/not-found', 404);
    }
    // An id from the future (a skewed or forged clock) is not "expired" either.
    const future = v7({ msecs: Date.now() + 30 * DAY });
    await h.http.get(`/jobs/${future}`).expect(404);
  });

  it('answers 410 for a job the purge deleted, and 200 while an old job still exists', async () => {
    const owner = await clientId(h.db, 'a');
    const insert = async (id: string) =>
      (await insertJob(h.db, { id, clientId: owner, transaction: tx('old'), maxAttempts: 1 })).row;
    const purged = await insert(old());
    const waiting = await insert(old()); // still pending: never purged, however old
    await h
      .db('jobs')
      .where({ id: purged.id })
      .update({
        status: 'succeeded',
        result: { merchant: null },
        created_at: new Date(Date.now() - 8 * DAY),
        finished_at: new Date(Date.now() - 8 * DAY),
      });
    await h.http.get(`/jobs/${purged.id}`).expect(200);
    expect(await purgeFinishedJobs(h.db, { olderThanMs: 7 * DAY, limit: 10 })).to.equal(1);
    expectProblem(await h.http.get(`/jobs/${purged.id}`).expect(410), '/problems/gone', 410);
    expect((await h.http.get(`/jobs/${waiting.id}`).expect(200)).body.status).to.equal('pending');
  });

  it("answers 410 for another client's old job exactly as for a purged one", async () => {
    const owner = await clientId(h.db, 'b');
    const id = old();
    await insertJob(h.db, { id, clientId: owner, transaction: tx('theirs'), maxAttempts: 1 });
    const theirs = await h.http.get(`/jobs/${id}`).expect(410);
    const purged = await h.http.get(`/jobs/${old()}`).expect(410);
    expect(Object.keys(theirs.body)).to.deep.equal(Object.keys(purged.body));
    expect(theirs.body.title).to.equal(purged.body.title);
  });

  it('says "1 day" with a one-day retention', async () => {
    await h.stop();
    h = await startHarness({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      config: { jobRetentionMs: DAY },
    });
    const res = await h.http.get(`/jobs/${madeAgo(2 * DAY)}`).expect(410);
    expect(res.body.retention_days).to.equal(1);
    expect(res.body.detail).to.contain('retention period of 1 day:');
  });
});
