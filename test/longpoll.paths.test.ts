/**
 * Long-poll promptness for every way a job can end. A waiter holds no timer that re-reads: it is
 * answered because the finish was announced (FINISHED_CHANNEL) and heard. So each test registers
 * its waiters first (counted in `h.events`), finishes the job one way, and requires the answer
 * within BOUND_MS of the moment the job finished (its `finished_at`, written by the statement
 * that finished it), far below the 10 s the waiter asked for. A path that forgot to announce
 * would be answered only when the wait ran out.
 */
import { expect } from 'chai';
import type { Response } from 'supertest';
import type { JobRow } from '../src/db/sql/rows.js';
import { eventually } from './support/db.js';
import { type Harness, type HarnessOptions, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import type { Transaction } from '../src/heuristic/types.js';

/** How late an answer may be after the job finished. */
const BOUND_MS = 500;
/** What each waiter asks for: an answer that needs it is a failure, not a slow pass. */
const WAIT_S = 10;

interface Answer {
  res: Response;
  /** When the answer arrived (Date.now()). */
  at: number;
}

/**
 * Sends `send()` (a request that waits) and resolves once it is registered as a waiter, with
 * `answer`: its answer and when it arrived.
 */
async function registered(
  h: Harness,
  send: () => PromiseLike<Response>,
  what: string,
): Promise<{ answer: Promise<Answer> }> {
  const before = h.events.size;
  const answer = Promise.resolve(send()).then((res) => ({ res, at: Date.now() }));
  await eventually(async () => h.events.size > before, 5000, `${what} to register`);
  return { answer };
}

function expectPrompt(answer: Answer, finishedAt: Date | null | undefined, what: string) {
  expect(finishedAt, `${what}: finished_at`).to.be.instanceOf(Date);
  const lateMs = answer.at - finishedAt!.getTime();
  expect(lateMs, `${what} answered ${lateMs} ms after the job finished`).to.be.below(BOUND_MS);
}

/** One transaction submitted alone or as a one-item batch: its job (and batch) ids. */
async function submitOne(h: Harness, t: Transaction, inBatch: boolean) {
  if (!inBatch) {
    const res = await h.http.post('/normalize_merchant').send(t).expect(202);
    return { jobId: res.body.id as string, batchId: undefined };
  }
  const res = await h.http
    .post('/normalize_merchant/batch')
    .send({ transactions: [t] })
    .expect(202);
  return { jobId: (res.body.job_ids as string[])[0]!, batchId: res.body.id as string };
}

/** A way for a job to end: the service it needs, and how to bring the job to its last step. */
interface Path {
  name: string;
  harness: () => HarnessOptions;
  /** Submits the job and brings it to the brink; `finish` ends it. */
  prepare: (
    h: Harness,
    inBatch: boolean,
  ) => Promise<{ jobId: string; batchId?: string; finish: () => Promise<void> }>;
  /** What the finished job must look like. */
  expectJob: (job: JobRow) => void;
}

let gate = new Gate();
let heuristic = new TestHeuristic(echoAfter(0));

const paths: Path[] = [
  {
    name: 'succeeds',
    harness: () => ({ heuristic: (heuristic = new TestHeuristic((gate = new Gate()).behaviour)) }),
    async prepare(h, inBatch) {
      const ids = await submitOne(h, tx('Netflix'), inBatch);
      await eventually(async () => heuristic.running === 1, 5000, 'the attempt to start');
      return { ...ids, finish: async () => gate.release() };
    },
    expectJob: (job) => expect(job.result).to.deep.equal({ merchant: { name: 'Netflix' } }),
  },
  {
    name: 'fails after its last attempt',
    harness: () => {
      gate = new Gate();
      heuristic = new TestHeuristic(async (t, signal, call) => {
        await gate.behaviour(t, signal, call);
        throw new Error('upstream exploded');
      });
      return { heuristic, jobMaxAttempts: 2 };
    },
    async prepare(h, inBatch) {
      const ids = await submitOne(h, tx('Netflix'), inBatch);
      await eventually(async () => heuristic.running === 1, 5000, 'the first attempt to start');
      // The first failure is retried (no announcement, the waiter keeps waiting); the second
      // is the last.
      return { ...ids, finish: async () => gate.release() };
    },
    expectJob: (job) => {
      expect(job).to.include({ status: 'failed', attempts: 2 });
      expect(job.error).to.deep.include({ message: 'upstream exploded', attempt: 2 });
    },
  },
  {
    name: 'is answered as a single-flight follower',
    harness: () => ({
      heuristic: (heuristic = new TestHeuristic((gate = new Gate()).behaviour, true)),
    }),
    async prepare(h, inBatch) {
      await submitOne(h, tx('Netflix', { reference: 'leader' }), false);
      await eventually(async () => heuristic.running === 1, 5000, 'the leader to start');
      // Same key while the leader computes it: it waits, pending, for the leader's answer.
      const ids = await submitOne(h, tx('Netflix', { reference: 'follower' }), inBatch);
      return { ...ids, finish: async () => gate.release() };
    },
    expectJob: (job) => {
      expect(job).to.include({ status: 'succeeded', attempts: 0 });
      expect(job.result).to.deep.equal({ merchant: { name: 'Netflix' } });
      expect(heuristic.calls, 'one heuristic call, shared').to.have.length(1);
    },
  },
  {
    name: 'is failed by the lease reaper',
    harness: () => ({
      heuristic: new TestHeuristic(echoAfter(0)),
      startRunner: false,
      jobMaxAttempts: 1,
      // The poll is what reaps; its interval does not matter here: the answer is timed from
      // the reap.
      runner: { pollMs: 200 },
    }),
    async prepare(h, inBatch) {
      const ids = await submitOne(h, tx('Netflix'), inBatch);
      // A worker that claims the job and dies: its lease is never renewed.
      const [claimed] = await h.store.runner.claim({ workerId: 'dead', limit: 1, leaseMs: 300 });
      expect(claimed?.id).to.equal(ids.jobId);
      return { ...ids, finish: async () => h.runner.start() };
    },
    expectJob: (job) => {
      expect(job).to.include({ status: 'failed', attempts: 1 });
      expect(job.error).to.include({ code: 'lease_expired' });
    },
  },
  {
    name: 'is canceled while pending',
    harness: () => ({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false }),
    async prepare(h, inBatch) {
      const ids = await submitOne(h, tx('Netflix'), inBatch);
      return {
        ...ids,
        finish: async () => void (await h.http.delete(`/jobs/${ids.jobId}`).expect(200)),
      };
    },
    expectJob: (job) => expect(job).to.include({ status: 'canceled', attempts: 0 }),
  },
  {
    name: 'is canceled while running',
    harness: () => ({ heuristic: (heuristic = new TestHeuristic((gate = new Gate()).behaviour)) }),
    async prepare(h, inBatch) {
      const ids = await submitOne(h, tx('Netflix'), inBatch);
      await eventually(async () => heuristic.running === 1, 5000, 'the attempt to start');
      return {
        ...ids,
        finish: async () => void (await h.http.delete(`/jobs/${ids.jobId}`).expect(200)),
      };
    },
    expectJob: (job) => expect(job).to.include({ status: 'canceled', attempts: 1, result: null }),
  },
];

describe('long-poll promptness: every way a job ends wakes its waiters', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    gate.release();
    await h?.stop();
    h = undefined;
  });

  describe('GET /jobs/:id?wait is answered at once when its job', () => {
    for (const path of paths) {
      it(path.name, async () => {
        h = await startHarness(path.harness());
        const { jobId, finish } = await path.prepare(h, false);
        const { answer } = await registered(
          h,
          () => h!.http.get(`/jobs/${jobId}?wait=${WAIT_S}`),
          'the job waiter',
        );
        await finish();
        const { res } = await answer;
        const job = await h.store.getJob(jobId, null);
        expect(res.status).to.equal(200);
        expect(res.body.status).to.equal(job?.status);
        path.expectJob(job!);
        expectPrompt(await answer, job?.finished_at, 'the job waiter');
      });
    }
  });

  describe('GET /batches/:id?wait is answered at once when the last job of its batch', () => {
    for (const path of paths) {
      it(path.name, async () => {
        h = await startHarness(path.harness());
        const { jobId, batchId, finish } = await path.prepare(h, true);
        const { answer: batchWaiter } = await registered(
          h,
          () => h!.http.get(`/batches/${batchId}?wait=${WAIT_S}`),
          'the batch waiter',
        );
        // The job's own waiter hears the same announcement.
        const { answer: jobWaiter } = await registered(
          h,
          () => h!.http.get(`/jobs/${jobId}?wait=${WAIT_S}`),
          'the job waiter',
        );
        await finish();
        const [batchAnswer, jobAnswer] = await Promise.all([batchWaiter, jobWaiter]);
        const job = await h.store.getJob(jobId, null);
        path.expectJob(job!);
        expect(jobAnswer.res.body.status).to.equal(job?.status);
        expect(batchAnswer.res.status).to.equal(200);
        expect(batchAnswer.res.body).to.include({ done: true, finished: 1 });
        expect(batchAnswer.res.body.counts[job!.status]).to.equal(1);
        const batch = await h.store.getBatch(batchId!, null);
        expectPrompt(batchAnswer, batch?.finished_at, 'the batch waiter');
        expectPrompt(jobAnswer, job?.finished_at, 'the job waiter');
      });
    }
  });

  describe('POST with Prefer: wait is answered at once when what it submitted', () => {
    it('is a job that succeeds', async () => {
      gate = new Gate();
      h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
      const { answer } = await registered(
        h,
        () => h!.http.post('/normalize_merchant').set('Prefer', `wait=${WAIT_S}`).send(tx('A')),
        'the submit',
      );
      gate.release();
      const { res } = await answer;
      expect(res.status).to.equal(200);
      expect(res.body.status).to.equal('succeeded');
      const job = await h.store.getJob(res.body.id as string, null);
      expectPrompt(await answer, job?.finished_at, 'the submit');
    });

    it('is a batch whose jobs all succeed', async () => {
      gate = new Gate();
      h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
      const { answer } = await registered(
        h,
        () =>
          h!.http
            .post('/normalize_merchant/batch')
            .set('Prefer', `wait=${WAIT_S}`)
            .send({ transactions: [tx('A'), tx('B')] }),
        'the batch submit',
      );
      gate.release();
      const { res } = await answer;
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ done: true, finished: 2 });
      const batch = await h.store.getBatch(res.body.id as string, null);
      expectPrompt(await answer, batch?.finished_at, 'the batch submit');
    });
  });

  describe('a wait on something already finished is answered at once', () => {
    /** A keyed heuristic's answer for "Netflix" in the result cache, and that first job. */
    async function cachedNetflix() {
      heuristic = new TestHeuristic(echoAfter(0), true);
      h = await startHarness({ heuristic });
      const first = (await h.http.post('/normalize_merchant').send(tx('Netflix')).expect(202))
        .body as { id: string };
      await eventually(async () => (await h!.store.getJob(first.id, null))?.status === 'succeeded');
      return first;
    }

    /** Sends `send()` and requires its answer within BOUND_MS, without ever waiting. */
    async function answeredAtOnce(send: () => PromiseLike<Response>): Promise<Response> {
      const before = h!.events.size;
      const started = Date.now();
      const res = await send();
      const tookMs = Date.now() - started;
      expect(tookMs, `answered after ${tookMs} ms`).to.be.below(BOUND_MS);
      expect(h!.events.size, 'waiters left behind').to.equal(before);
      return res;
    }

    it('POST with Prefer: wait answered from the result cache at submit: 200, finished', async () => {
      await cachedNetflix();
      const res = await answeredAtOnce(() =>
        h!.http.post('/normalize_merchant').set('Prefer', `wait=${WAIT_S}`).send(tx('Netflix')),
      );
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ status: 'succeeded', attempts: 0 });
      expect(res.body.result).to.deep.equal({ merchant: { name: 'Netflix' } });
    });

    it('POST batch with Prefer: wait whose every item is in the result cache: 200, done', async () => {
      await cachedNetflix();
      const res = await answeredAtOnce(() =>
        h!.http
          .post('/normalize_merchant/batch')
          .set('Prefer', `wait=${WAIT_S}`)
          .send({ transactions: [tx('Netflix'), tx('Netflix', { reference: 'again' })] }),
      );
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ done: true, finished: 2 });
      expect(heuristic.calls).to.have.length(1);
    });

    it('GET ?wait on a job answered from the result cache at submit', async () => {
      await cachedNetflix();
      const hit = await h!.http.post('/normalize_merchant').send(tx('Netflix')).expect(202);
      expect(hit.body.status).to.equal('succeeded');
      const res = await answeredAtOnce(() => h!.http.get(`/jobs/${hit.body.id}?wait=${WAIT_S}`));
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ id: hit.body.id, status: 'succeeded' });
    });

    it('GET ?wait on a job that ran and finished', async () => {
      const first = await cachedNetflix();
      const res = await answeredAtOnce(() => h!.http.get(`/jobs/${first.id}?wait=${WAIT_S}`));
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ status: 'succeeded', attempts: 1 });
    });

    it('GET ?wait on a batch that is done', async () => {
      await cachedNetflix();
      const { body: batch } = await h!.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx('Netflix')] })
        .expect(202);
      expect(batch.done).to.equal(true);
      const res = await answeredAtOnce(() => h!.http.get(`/batches/${batch.id}?wait=${WAIT_S}`));
      expect(res.status).to.equal(200);
      expect(res.body).to.include({ done: true, finished: 1 });
    });
  });
});
