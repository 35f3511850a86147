import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import {
  AHEAD_CAP,
  MAX_RETRY_AFTER_SECONDS,
  QueueEstimator,
  aheadThatMatters,
  estimateSeconds,
} from '../src/jobs/eta.js';
import { AttemptStats } from '../src/runner/stats.js';
import { createLogger } from '../src/log.js';
import { startService } from '../src/service.js';
import { eventually, databaseUrl } from './support/db.js';
import { type Harness, startHarness, submitJob, testConfig } from './support/harness.js';
import { expectProblem } from './support/problem.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';

describe('long-poll and conditional requests', () => {
  let h: Harness;
  afterEach(() => h.stop());

  const submit = (description: string) => submitJob(h, description);

  it('GET /jobs/:id?wait=N answers as soon as the job finishes, not when N runs out', async () => {
    const gate = new Gate();
    h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
    const job = await submit('Netflix');
    const started = Date.now();
    const waiting = h.http.get(`/jobs/${job.id}?wait=20`).then((r) => r);
    await eventually(async () => h.events.size === 1, 5000, 'the waiter to register');
    gate.release();
    const res = await waiting;
    expect(res.status).to.equal(200);
    expect(res.body.status).to.equal('succeeded');
    expect(Date.now() - started).to.be.below(10_000);
    expect(res.headers).not.to.have.property('retry-after');
  });

  it('answers with the unfinished job once the wait runs out', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const job = await submit('Netflix');
    const started = Date.now();
    const res = await h.http.get(`/jobs/${job.id}?wait=1`).expect(200);
    expect(Date.now() - started).to.be.at.least(950);
    expect(res.body.status).to.equal('pending');
    expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
  });

  it('wakes a waiter when another process completes the job (LISTEN/NOTIFY)', async () => {
    // This harness never runs the job; a second runner with its own pool does, as another
    // process would. The waiter only hears about it through Postgres.
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const job = await submit('Spotify');
    const waiting = h.http.get(`/jobs/${job.id}?wait=20`).then((r) => r);
    await eventually(async () => h.events.size === 1, 5000, 'the waiter to register');
    // Another process: the same service wiring, on its own pool and LISTEN connection.
    const started = Date.now();
    const other = await startService(testConfig(databaseUrl(h.db)), {
      heuristic: new TestHeuristic(echoAfter(0)),
      log: createLogger('silent'),
      listen: false,
    });
    try {
      const res = await waiting;
      expect(res.body.status).to.equal('succeeded');
      expect(Date.now() - started).to.be.below(10_000);
    } finally {
      await other.stop();
    }
  });

  it('holds hundreds of waiters on a pool of 2 connections without starving other requests', async () => {
    const gate = new Gate();
    h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour), poolMax: 2 });
    const job = await submit('Dropbox');
    const handle = h.app.callback();
    const server = http.createServer((req, res) => void handle(req, res)).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const auth = { authorization: `Bearer ${h.key.key}` };
    try {
      const waiters = Array.from({ length: 300 }, () =>
        fetch(`${base}/jobs/${job.id}?wait=30`, { headers: auth }).then(
          async (r) => (await r.json()) as { status: string },
        ),
      );
      await eventually(async () => h.events.size === 300, 10_000, '300 waiters to register');
      // Were each waiter holding a connection, this would queue behind them for the pool.
      const plain = await fetch(`${base}/jobs/${job.id}`, {
        headers: auth,
        signal: AbortSignal.timeout(5000),
      });
      expect(plain.status).to.equal(200);
      expect(((await plain.json()) as { status: string }).status).to.equal('running');

      gate.release();
      const answers = await Promise.all(waiters);
      expect(answers.every((a) => a.status === 'succeeded')).to.equal(true);
      expect(h.events.size).to.equal(0);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('answers every waiter at once when the service shuts down', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const job = await submit('Uber');
    const started = Date.now();
    const waiting = h.http.get(`/jobs/${job.id}?wait=30`).then((r) => r);
    await eventually(async () => h.events.size === 1, 5000, 'the waiter to register');
    h.events.close();
    const res = await waiting;
    expect(res.body.status).to.equal('pending');
    expect(Date.now() - started).to.be.below(5000);
  });

  it('rejects a wait that is not 0..60 whole seconds with 400 naming the parameter', async () => {
    h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
    const job = await submit('Uber');
    for (const wait of ['61', '-1', '1.5', 'soon', '']) {
      const res = await h.http.get(`/jobs/${job.id}?wait=${wait}`).expect(400);
      expectProblem(res, '/problems/invalid-parameter', 400);
      expect(res.body.errors).to.deep.equal([
        { parameter: 'wait', detail: 'must be a whole number of seconds from 0 to 60' },
      ]);
    }
    const unknown = await h.http.get(`/jobs/${job.id}?wiat=5`).expect(400);
    expect(unknown.body.errors[0]).to.include({ parameter: 'wiat' });
    const twice = await h.http.get(`/jobs/${job.id}?wait=1&wait=2`).expect(400);
    expect(twice.body.errors[0]).to.deep.equal({ parameter: 'wait', detail: 'must be given once' });
  });

  describe('ETag and If-None-Match', () => {
    it('answers 304 while unchanged and 200 with a new ETag once it changed', async () => {
      const gate = new Gate();
      h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
      const job = await submit('Netflix');
      // Running (held at the gate): nothing changes until the gate opens.
      const first = await eventually(async () => {
        const res = await h!.http.get(`/jobs/${job.id}`).expect(200);
        return res.body.status === 'running' && res;
      });
      const etag = first.headers.etag as string;
      const same = await h.http.get(`/jobs/${job.id}`).set('If-None-Match', etag).expect(304);
      expect(same.headers.etag).to.equal(etag);
      expect(same.text).to.equal('');
      expect(Number(same.headers['retry-after'])).to.be.within(1, 60);
      // Weak comparison: W/"x" matches "x"; lists and * work too.
      await h.http.get(`/jobs/${job.id}`).set('If-None-Match', `W/${etag}`).expect(304);
      await h.http.get(`/jobs/${job.id}`).set('If-None-Match', `"other", ${etag}`).expect(304);

      gate.release();
      const changed = await h.http
        .get(`/jobs/${job.id}?wait=10`)
        .set('If-None-Match', etag)
        .expect(200);
      expect(changed.body.status).to.equal('succeeded');
      expect(changed.headers.etag).not.to.equal(etag);
      await h.http
        .get(`/jobs/${job.id}`)
        .set('If-None-Match', changed.headers.etag as string)
        .expect(304);
    });

    it('a batch waiter with If-None-Match hears each job finishing (progress), not only the end', async () => {
      const gate = new Gate();
      h = await startHarness({ heuristic: new TestHeuristic(gate.behaviour) });
      const { body: batch, headers } = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: [tx('A'), tx('B'), tx('C')] })
        .expect(202);
      let etag = headers.etag as string;
      const seen: number[] = [];
      for (const description of ['A', 'B', 'C']) {
        // Waiting, or already answered (a claim changed the batch since that ETag).
        let answered = false;
        const waiting = h.http
          .get(`/batches/${batch.id}?wait=20`)
          .set('If-None-Match', etag)
          .then((r) => {
            answered = true;
            return r;
          });
        await eventually(async () => answered || h.events.size === 1, 5000, 'the waiter');
        gate.release(description);
        let res = await waiting;
        // Claims also change the representation (pending -> running); wait again until the
        // finished count moved.
        while (res.body.finished === (seen.at(-1) ?? 0)) {
          etag = res.headers.etag as string;
          res = await h.http.get(`/batches/${batch.id}?wait=20`).set('If-None-Match', etag);
        }
        expect(res.status).to.equal(200);
        etag = res.headers.etag as string;
        seen.push(res.body.finished as number);
      }
      expect(seen).to.deep.equal([1, 2, 3]);
      const final = await h.http.get(`/batches/${batch.id}?wait=5`).expect(200);
      expect(final.body.done).to.equal(true);
    });

    it('GET /batches/:id?wait=N without If-None-Match answers when the batch is done', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(50)) });
      const { body: batch } = await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: Array.from({ length: 8 }, (_, i) => tx(`M${i}`)) })
        .expect(202);
      const res = await h.http.get(`/batches/${batch.id}?wait=30`).expect(200);
      expect(res.body).to.include({ done: true, finished: 8 });
    });
  });

  describe('Prefer: wait=N on POST', () => {
    it('answers 200 with the finished job when it finishes in time', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(20)) });
      const res = await h.http
        .post('/normalize_merchant')
        .set('Prefer', 'wait=10')
        .send(tx('Netflix'))
        .expect(200);
      expect(res.body.status).to.equal('succeeded');
      expect(res.body.result).to.deep.equal({ merchant: { name: 'Netflix' } });
      expect(res.headers['preference-applied']).to.equal('wait=10');
      expect(res.headers['content-location']).to.equal(`/jobs/${res.body.id}`);
    });

    it('answers 202 with Location when it does not finish in time', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const res = await h.http
        .post('/normalize_merchant')
        .set('Prefer', 'respond-async, wait=1')
        .send(tx('Netflix'))
        .expect(202);
      expect(res.body.status).to.equal('pending');
      expect(res.headers.location).to.equal(`/jobs/${res.body.id}`);
      expect(res.headers['preference-applied']).to.equal('wait=1');
    });

    it('works for batches: 200 with the done batch', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(10)) });
      const res = await h.http
        .post('/normalize_merchant/batch')
        .set('Prefer', 'wait=20')
        .send({ transactions: [tx('A'), tx('B')] })
        .expect(200);
      expect(res.body).to.include({ done: true, finished: 2 });
      expect(res.body.job_ids).to.have.length(2);
    });
  });

  describe('Retry-After', () => {
    it('grows with the queue ahead of the job', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const answers = [];
      for (let i = 0; i < 30; i++) {
        const res = await h.http
          .post('/normalize_merchant')
          .send(tx(`M${i}`))
          .expect(202);
        answers.push(Number(res.headers['retry-after']));
      }
      // 4 slots, 1 s assumed per attempt: the 30th job has 29 ahead -> 8 rounds.
      expect(answers[0]).to.equal(1);
      expect(answers[29]).to.equal(8);
      expect(answers).to.deep.equal([...answers].sort((a, b) => a - b));
    });
  });
});

// Without a harness: the describe above stops one after each of its tests.
describe('the Retry-After estimate (src/jobs/eta.ts)', () => {
  it('estimates from depth, slots and mean duration, within 1..60 s', () => {
    expect(estimateSeconds({ status: 'pending', ahead: 0, slots: 16, meanMs: 15_000 })).to.equal(
      15,
    );
    expect(estimateSeconds({ status: 'pending', ahead: 32, slots: 16, meanMs: 5000 })).to.equal(15);
    expect(
      estimateSeconds({ status: 'pending', ahead: 10_000, slots: 16, meanMs: 15_000 }),
    ).to.equal(60);
    expect(
      estimateSeconds({
        status: 'running',
        ahead: 0,
        slots: 1,
        meanMs: 15_000,
        elapsedMs: 12_500,
      }),
    ).to.equal(3);
    expect(
      estimateSeconds({ status: 'running', ahead: 0, slots: 1, meanMs: 1000, elapsedMs: 9000 }),
    ).to.equal(1);
  });

  it('counts the jobs ahead only as far as the count can change the answer', () => {
    for (const slots of [1, 3, 16, 160]) {
      for (const meanMs of [0, 0.2, 1, 999, 1000, 1001, 7500, 30_000, 59_000, 59_001, 600_000]) {
        const cap = aheadThatMatters(slots, meanMs);
        const capped = (ahead: number) =>
          estimateSeconds({ status: 'pending', ahead: Math.min(ahead, cap), slots, meanMs });
        const exact = (ahead: number) =>
          estimateSeconds({ status: 'pending', ahead, slots, meanMs });
        for (let ahead = 0; ahead <= AHEAD_CAP; ahead += ahead < 1000 ? 1 : 499) {
          expect(capped(ahead), `${slots} slots, ${meanMs} ms, ${ahead} ahead`).to.equal(
            exact(ahead),
          );
        }
      }
    }
    // 10 s a job on 16 slots: past 6 rounds (96 jobs) the answer is 60 s, whatever the depth.
    expect(aheadThatMatters(16, 10_000)).to.equal(96);
    expect(aheadThatMatters(16, 60_000)).to.equal(0);
    expect(aheadThatMatters(16, 0)).to.equal(AHEAD_CAP);
  });

  it("asks the database to count no further than that for a pending job's Retry-After", async () => {
    const caps: number[] = [];
    const queued = 5000;
    const store = {
      countActiveWorkers: () => Promise.resolve(1),
      countPending: () => Promise.resolve(0),
      countPendingBefore: (_seq: string, cap: number) => {
        caps.push(cap);
        return Promise.resolve(Math.min(queued, cap));
      },
    };
    const pendingRow = { status: 'pending', seq: '5001' } as Parameters<
      QueueEstimator['forJob']
    >[0];
    const estimate = (meanMs: number) =>
      new QueueEstimator(store, new AttemptStats(meanMs), 16).forJob(pendingRow);
    expect(await estimate(10_000)).to.equal(MAX_RETRY_AFTER_SECONDS);
    expect(caps).to.deep.equal([96]);
    expect(await estimate(90_000)).to.equal(MAX_RETRY_AFTER_SECONDS);
    expect(caps, 'no count: the answer is the maximum with none ahead').to.deep.equal([96]);
    expect(await estimate(1)).to.equal(1); // 5000 ahead / 16 slots x 1 ms
    expect(caps).to.deep.equal([96, AHEAD_CAP]);
  });

  it('waits for the count of active workers only the first time, later ones read in the background', async () => {
    let clock = 0;
    const counts: { resolve: (n: number) => void; reject: (err: Error) => void }[] = [];
    const store = {
      countActiveWorkers: () =>
        new Promise<number>((resolve, reject) => counts.push({ resolve, reject })),
      countPending: () => Promise.resolve(0),
      countPendingBefore: () => Promise.resolve(AHEAD_CAP), // a deep queue: ahead / slots
    };
    const pendingRow = { status: 'pending', seq: '1' } as Parameters<QueueEstimator['forJob']>[0];
    // 1 ms a job on 4 slots per process: AHEAD_CAP jobs ahead take AHEAD_CAP / (4 x workers) ms.
    const estimator = new QueueEstimator(store, new AttemptStats(1), 4, () => clock);
    const answer = () => {
      const state: { value?: number } = {};
      const done = estimator.forJob(pendingRow).then((v) => (state.value = v));
      return { state, done };
    };
    const settled = () => new Promise((resolve) => setImmediate(resolve));

    const first = answer();
    await settled();
    expect(first.state.value, 'the first answer waits for the first count').to.equal(undefined);
    counts[0]?.resolve(1);
    await first.done;
    expect(first.state.value).to.equal(3); // 10,000 / 4 slots x 1 ms: 2.5 s

    clock += 3000; // the count is stale: counted again, not waited for
    const second = answer();
    await settled();
    expect(counts, 'a new count').to.have.length(2);
    expect(second.state.value, 'answered on the last count meanwhile').to.equal(3);
    counts[1]?.resolve(5); // five processes: 20 slots
    await settled();
    expect(await answer().done, 'the new count, once read').to.equal(1);

    clock += 3000;
    const third = answer();
    await settled();
    counts[2]?.reject(new Error('connection lost'));
    await settled();
    expect(third.state.value, 'a failed count leaves the last one').to.equal(1);
    clock += 1; // still stale: the next answer counts again
    const fourth = answer();
    await settled();
    expect(counts).to.have.length(4);
    expect(fourth.state.value).to.equal(1);
  });

  it("counts the queue for a submit's Retry-After no further than that either", async () => {
    for (const queued of [40, 5000]) {
      const caps: number[] = [];
      const store = {
        countActiveWorkers: () => Promise.resolve(1),
        countPendingBefore: () => Promise.reject(new Error('not asked here')),
        countPending: ({ cap }: { cap: number }) => {
          caps.push(cap);
          return Promise.resolve(Math.min(queued, cap));
        },
      };
      const estimator = new QueueEstimator(store, new AttemptStats(10_000), 16);
      estimator.forSubmitted(1); // the first submit starts the count in the background
      await new Promise((resolve) => setImmediate(resolve));
      expect(caps, `${queued} queued`).to.deep.equal([96]);
      // The next one is answered from that count: as the whole queue would be.
      const exact = estimateSeconds({
        status: 'pending',
        ahead: queued,
        slots: 16,
        meanMs: 10_000,
      });
      expect(estimator.forSubmitted(1), `${queued} queued`).to.equal(exact);
    }
    expect(estimateSeconds({ status: 'pending', ahead: 40, slots: 16, meanMs: 10_000 })).to.equal(
      30,
    );
  });
});
