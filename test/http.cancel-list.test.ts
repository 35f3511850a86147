import { expect } from 'chai';
import { JobCanceledError } from '../src/runner/errors.js';
import { eventually } from './support/db.js';
import { type Harness, startHarness, submitJob } from './support/harness.js';
import { attemptOutcomes } from './support/metrics.js';
import { expectProblem } from './support/problem.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';

describe('DELETE /jobs/:id', () => {
  let h: Harness;
  afterEach(() => h.stop());

  const submit = (description: string) => submitJob(h, description);

  it('cancels a pending job at once; the heuristic never sees it', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    h = await startHarness({ heuristic, startRunner: false });
    const job = await submit('Netflix');
    const res = await h.http.delete(`/jobs/${job.id}`).expect(200);
    expect(res.body).to.include({ id: job.id, status: 'canceled', result: null });
    expect(res.body.finished_at).to.be.a('string');
    h.runner.start();
    const other = await submit('Spotify');
    await eventually(async () => (await h.store.getJob(other.id, null))?.status === 'succeeded');
    expect(heuristic.calls.map((c) => c.description)).to.deep.equal(['Spotify']);
    expect((await h.store.getJob(job.id, null))?.status).to.equal('canceled');
  });

  it('aborts a running attempt through its AbortSignal and discards its result', async () => {
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour);
    h = await startHarness({ heuristic });
    const job = await submit('Netflix');
    await eventually(async () => heuristic.running === 1);
    const res = await h.http.delete(`/jobs/${job.id}`).expect(200);
    expect(res.body.status).to.equal('canceled');
    await eventually(async () => gate.aborted.length === 1, 5000, 'the attempt to be aborted');
    expect(gate.aborted[0]).to.be.instanceOf(JobCanceledError);
    await eventually(async () => heuristic.running === 0);
    const row = await h.store.getJob(job.id, null);
    expect(row).to.include({ status: 'canceled', result: null, locked_by: null });
  });

  it('discards the answer of a heuristic that ignores the signal', async () => {
    let release!: () => void;
    const stubborn = new Promise<void>((resolve) => (release = resolve));
    const heuristic = new TestHeuristic(async (t) => {
      await stubborn;
      return { name: t.description };
    });
    h = await startHarness({ heuristic });
    const job = await submit('Netflix');
    await eventually(async () => heuristic.running === 1);
    await h.http.delete(`/jobs/${job.id}`).expect(200);
    release();
    await eventually(async () => heuristic.running === 0);
    // Whether the cancel's NOTIFY aborted the attempt first or its answer met the fenced write,
    // the runner is done with it once the attempt is counted.
    const counted = await eventually(async () => {
      const outcomes = await attemptOutcomes(h.service.metrics);
      return Object.keys(outcomes).length > 0 && outcomes;
    });
    expect(counted).to.deep.equal({ canceled: 1 });
    expect(await h.store.getJob(job.id, null)).to.include({ status: 'canceled', result: null });
  });

  it('answers 409 for a finished job, saying its status, and 404 for an unknown one', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
    const job = await submit('Netflix');
    await eventually(async () => (await h.store.getJob(job.id, null))?.status === 'succeeded');
    const res = await h.http.delete(`/jobs/${job.id}`).expect(409);
    expectProblem(res, '/problems/job-already-finished', 409);
    expect(res.body.job_status).to.equal('succeeded');
    expect((await h.store.getJob(job.id, null))?.status).to.equal('succeeded');

    const again = await submit('Spotify');
    await eventually(async () => (await h.store.getJob(again.id, null))?.status === 'succeeded');
    expectProblem(
      await h.http.delete('/jobs/6f1c1d57-8a52-4d8c-9d1e-3f0a2b9c4e11').expect(404),
      '/problems/not-found',
      404,
    );
    expectProblem(await h.http.delete('/jobs/nope').expect(404), '/problems/not-found', 404);
  });

  it('a canceled job counts as finished in its batch', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const { body: batch } = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('A'), tx('B')] })
      .expect(202);
    await h.http.delete(`/jobs/${batch.job_ids[1]}`).expect(200);
    const res = await h.http.get(`/batches/${batch.id}`).expect(200);
    expect(res.body.counts).to.include({ pending: 1, canceled: 1 });
    expect(res.body).to.include({ finished: 1, done: false });
  });
});

describe('GET /jobs', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
  });
  afterEach(() => h.stop());

  it('lists jobs newest first, every job exactly once across cursor pages', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      ids.push((await h.http.post('/normalize_merchant').send(tx(`M${i}`))).body.id as string);
    }
    const seen: string[] = [];
    let url: string | undefined = '/jobs?limit=3';
    while (url) {
      const page: { body: { jobs: { id: string }[]; next_cursor: string | null } } & {
        headers: Record<string, string | undefined>;
      } = await h.http.get(url).expect(200);
      seen.push(...page.body.jobs.map((j) => j.id));
      const link = page.headers.link;
      url = link ? /^<([^>]+)>; rel="next"$/.exec(link)?.[1] : undefined;
      expect(Boolean(page.body.next_cursor)).to.equal(Boolean(link));
    }
    expect(seen).to.deep.equal([...ids].reverse());
  });

  it('filters by status (comma-separated) and by batch', async () => {
    const single = (await h.http.post('/normalize_merchant').send(tx('Solo'))).body.id as string;
    const { body: batch } = await h.http
      .post('/normalize_merchant/batch')
      .send({ transactions: [tx('A'), tx('B'), tx('C')] });
    await h.http.delete(`/jobs/${batch.job_ids[0]}`).expect(200);
    await h.http.delete(`/jobs/${single}`).expect(200);

    const inBatch = await h.http.get(`/jobs?batch=${batch.id}`).expect(200);
    expect(inBatch.body.jobs.map((j: { id: string }) => j.id)).to.have.members(batch.job_ids);
    const canceled = await h.http.get('/jobs?status=canceled').expect(200);
    expect(canceled.body.jobs.map((j: { id: string }) => j.id)).to.have.members([
      single,
      batch.job_ids[0],
    ]);
    const both = await h.http.get(`/jobs?status=pending,canceled&batch=${batch.id}`).expect(200);
    expect(both.body.jobs).to.have.length(3);
    const none = await h.http.get('/jobs?status=failed').expect(200);
    expect(none.body).to.deep.equal({ jobs: [], next_cursor: null });
  });

  const bad: Array<[string, string]> = [
    ['status=done', 'status'],
    ['status=pending,', 'status'],
    ['batch=123', 'batch'],
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['cursor=bm9wZQ', 'cursor'],
    ['colour=red', 'colour'],
  ];
  for (const [query, parameter] of bad) {
    it(`answers 400 naming "${parameter}" for ?${query}`, async () => {
      const res = await h.http.get(`/jobs?${query}`).expect(400);
      expectProblem(res, '/problems/invalid-parameter', 400);
      expect(res.body.errors[0]).to.include({ parameter });
    });
  }
});
