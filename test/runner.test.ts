import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { type JobRow, TERMINAL_STATUSES } from '../src/db/sql/rows.js';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { countAcquisitions, eventually, insertPending, jobStatuses } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { attemptOutcomes } from './support/metrics.js';
import { otherRunner } from './support/other-runner.js';

const HOUR = 3_600_000;

describe('Runner', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  async function submit(description: string): Promise<string> {
    const res = await h!.http.post('/normalize_merchant').send(tx(description)).expect(202);
    return res.body.id as string;
  }

  /** Reaps as soon as a lease has run out (by the database's clock); what it reaped. */
  async function reapOnceExpired() {
    return eventually(
      async () => {
        const r = await h!.store.runner.reap({ limit: 10 });
        return r.requeued + r.failed > 0 && r;
      },
      5000,
      'a lease to run out',
    );
  }

  /** One fenced completion through the store (a group of one) of `job` as a claim returned it. */
  async function completeOne(o: {
    workerId: string;
    job: JobRow;
    merchant: { name: string } | null;
  }) {
    const [row] = await h!.store.runner.complete({
      workerId: o.workerId,
      items: [{ job: o.job, result: { merchant: o.merchant } }],
    });
    return row;
  }

  async function finished(id: string, timeoutMs = 10_000): Promise<JobRow> {
    return eventually(
      async () => {
        const row = await h!.store.getJob(id, null);
        return row && TERMINAL_STATUSES.includes(row.status) && row;
      },
      timeoutMs,
      `job ${id} to finish`,
    );
  }

  describe('state machine', () => {
    it('pending -> running -> succeeded with the merchant the heuristic found', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(10)) });
      const row = await finished(await submit('Netflix'));
      expect(row).to.include({ status: 'succeeded', attempts: 1, error: null, locked_by: null });
      expect(row.result).to.deep.equal({ merchant: { name: 'Netflix' } });
      expect(row.finished_at).to.be.instanceOf(Date);
    });

    it('records "no merchant found" as a success with merchant: null', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(() => Promise.resolve(null)) });
      const row = await finished(await submit('XQZ 99812 UNKNOWN'));
      expect(row.status).to.equal('succeeded');
      expect(row.result).to.deep.equal({ merchant: null });
    });

    it('retries a failed attempt after a backoff, then succeeds', async () => {
      const callTimes: number[] = [];
      const heuristic = new TestHeuristic((t, _signal, call) => {
        callTimes.push(Date.now());
        if (call === 1) return Promise.reject(new Error('flaky upstream'));
        return Promise.resolve({ name: t.description });
      });
      h = await startHarness({ heuristic, runner: { backoffBaseMs: 300, backoffMaxMs: 300 } });
      const row = await finished(await submit('Hulu'));
      expect(row).to.include({ status: 'succeeded', attempts: 2, error: null });
      expect(heuristic.calls).to.have.length(2);
      // Equal jitter: the retry waits at least half the nominal delay.
      expect(callTimes[1]! - callTimes[0]!).to.be.at.least(150);
    });

    it('fails after the last attempt, with an error that says why', async () => {
      const heuristic = new TestHeuristic(() => Promise.reject(new Error('upstream exploded')));
      h = await startHarness({ heuristic, jobMaxAttempts: 3 });
      const row = await finished(await submit('Spotify'));
      expect(row).to.include({ status: 'failed', attempts: 3, result: null });
      expect(row.error).to.deep.equal({
        code: 'heuristic_error',
        message: 'upstream exploded',
        attempt: 3,
      });
      expect(heuristic.calls).to.have.length(3);
      const res = await h.http.get(`/jobs/${row.id}`).expect(200);
      expect(res.body.error.message).to.equal('upstream exploded');
    });

    it('fails at once, without retrying, on NonRetryableError', async () => {
      const heuristic = new TestHeuristic(() =>
        Promise.reject(new NonRetryableError('descriptor is not a card transaction')),
      );
      h = await startHarness({ heuristic, jobMaxAttempts: 5 });
      const row = await finished(await submit('???'));
      expect(row).to.include({ status: 'failed', attempts: 1 });
      expect(row.error).to.include({ code: 'non_retryable' });
      expect(heuristic.calls).to.have.length(1);
    });

    it('times an attempt out through its AbortSignal and fails after the last attempt', async () => {
      const reasons: unknown[] = [];
      const heuristic = new TestHeuristic(async (_t, signal) => {
        try {
          await sleep(HOUR, undefined, { signal });
        } finally {
          reasons.push(signal.reason);
        }
        return null;
      });
      h = await startHarness({ heuristic, jobMaxAttempts: 2, runner: { timeoutMs: 100 } });
      const row = await finished(await submit('Slow'));
      expect(row).to.include({ status: 'failed', attempts: 2 });
      expect(row.error).to.deep.equal({
        code: 'timeout',
        message: 'heuristic did not answer within 100 ms',
        attempt: 2,
      });
      expect(reasons).to.have.length(2);
      expect((reasons[0] as Error).name).to.equal('AttemptTimeoutError');
    });
  });

  describe('retry delays', () => {
    // Pinned at both ends of [0, 1): the stored run_after is the failure time plus half the
    // nominal delay (0) or all of it (just under 1); nominal 4 s doubling, capped at 20 s.
    const pins: Array<[string, number, number[]]> = [
      ['0', 0, [2000, 4000, 8000, 10_000]],
      ['just under 1', 1 - 2 ** -53, [4000, 8000, 16_000, 20_000]],
    ];
    for (const [label, pinned, expected] of pins) {
      it(`stores run_after = failure + the delay of attempts 1..4, randomness pinned at ${label}`, async () => {
        const failedAt: number[] = [];
        const heuristic = new TestHeuristic((_t, _signal, call) => {
          failedAt[call] = Date.now();
          return Promise.reject(new Error(`failure ${call}`));
        });
        h = await startHarness({
          heuristic,
          jobMaxAttempts: 5,
          random: () => pinned,
          runner: { backoffBaseMs: 4000, backoffMaxMs: 20_000 },
        });
        const id = await submit('Flaky');
        for (const [i, delay] of expected.entries()) {
          const attempt = i + 1;
          const row = await eventually(
            async () => {
              const r = await h!.store.getJob(id, null);
              return r?.status === 'pending' && r.error?.attempt === attempt && r;
            },
            5000,
            `attempt ${attempt} to fail`,
          );
          const seenAt = Date.now();
          const runAfter = row.run_after.getTime();
          // The failure was written after the heuristic threw and before the test saw it.
          expect(runAfter, `attempt ${attempt}`).to.be.within(
            failedAt[attempt]! + delay - 1,
            seenAt + delay,
          );
          // Time passes: the retry comes due now.
          await h.db('jobs').where({ id, status: 'pending' }).update({ run_after: h.db.fn.now() });
          h.runner.wake();
        }
        const last = await finished(id);
        expect(last).to.include({ status: 'failed', attempts: 5 });
        expect(heuristic.calls).to.have.length(5);
      });
    }
  });

  describe('concurrency', () => {
    it('never runs more than `concurrency` heuristics at once', async () => {
      const heuristic = new TestHeuristic(echoAfter(30));
      h = await startHarness({ heuristic, runner: { concurrency: 3 } });
      const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => submit(`m${i}`)));
      for (const id of ids) expect((await finished(id)).status).to.equal('succeeded');
      expect(heuristic.calls).to.have.length(20);
      expect(heuristic.maxRunning).to.equal(3);
    });

    it('keeps the slot of a timed-out heuristic that ignores its signal until it returns', async () => {
      // This heuristic never looks at its signal: it answers after 400 ms regardless.
      const heuristic = new TestHeuristic(async (t) => {
        await sleep(400);
        return { name: t.description };
      });
      h = await startHarness({
        heuristic,
        jobMaxAttempts: 1,
        runner: { concurrency: 1, timeoutMs: 50 },
      });
      const first = await submit('first');
      const second = await submit('second');
      const firstRow = await finished(first);
      // The job is failed at the timeout, without waiting for the heuristic...
      expect(firstRow.error).to.include({ code: 'timeout' });
      await finished(second);
      // ...but the second attempt only started once the first heuristic call had returned.
      expect(heuristic.maxRunning).to.equal(1);
    });
  });

  describe('wake-ups', () => {
    it('claims a job submitted to this process at once, without waiting for the poll', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      // The start-up poll reaps this job of a dead worker (its lease already ran out) and runs
      // it: once it has succeeded, that poll is over, and the next one is an hour away.
      const planted = await insertPending(h.db, 'Planted');
      await h.store.runner.claim({ workerId: 'dead', limit: 1, leaseMs: -1000 });
      h.runner.start();
      expect((await finished(planted.id)).status).to.equal('succeeded');
      const row = await finished(await submit('Zoom'), 3000);
      expect(row.status).to.equal('succeeded');
    });

    it('claims a job inserted by another process when NOTIFY arrives', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)) });
      // Inserted behind the service's back, as another process would: no local wake-up, and
      // the poll is an hour away, so only the NOTIFY on the service's LISTEN can start it.
      const job = await insertPending(h.db, 'Dropbox');
      expect((await finished(job.id, 3000)).status).to.equal('succeeded');
    });
  });

  describe('leases', () => {
    it('reclaims a job whose worker died (its lease expired) and completes it', async () => {
      h = await startHarness({
        heuristic: new TestHeuristic(echoAfter(0)),
        startRunner: false,
        runner: { pollMs: 100 },
      });
      const job = await insertPending(h.db, 'Audible');
      const [claimed] = await h.store.runner.claim({ workerId: 'dead', limit: 1, leaseMs: 300 });
      expect(claimed?.id).to.equal(job.id);
      h.runner.start();
      const row = await finished(job.id);
      expect(row).to.include({ status: 'succeeded', attempts: 2, error: null });
    });

    it('fails a job whose lease expired on its last attempt', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const job = await insertPending(h.db, 'Poison', 1);
      await h.store.runner.claim({ workerId: 'dead', limit: 1, leaseMs: 300 });
      expect(await reapOnceExpired()).to.deep.equal({ requeued: 0, failed: 1 });
      const row = await h.store.getJob(job.id, null);
      expect(row).to.include({ status: 'failed', attempts: 1 });
      expect(row?.error).to.include({ code: 'lease_expired' });
    });

    it('ignores a late answer from an attempt that lost its lease (fenced completion)', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const job = await insertPending(h.db, 'Etsy');
      const [a] = await h.store.runner.claim({ workerId: 'A', limit: 1, leaseMs: 300 });
      expect(await reapOnceExpired()).to.deep.equal({ requeued: 1, failed: 0 });
      const [b] = await h.store.runner.claim({ workerId: 'B', limit: 1, leaseMs: 30_000 });
      expect(b?.attempts).to.equal(2);

      const claimA = { id: job.id, attempts: a!.attempts };
      const late = await completeOne({ workerId: 'A', job: a!, merchant: { name: 'stale' } });
      expect(late).to.equal(undefined);
      const lateFailure = await h.store.runner.fail({
        workerId: 'A',
        claim: claimA,
        error: { code: 'heuristic_error', message: 'x', attempt: 1 },
        retry: true,
        retryDelayMs: 0,
      });
      expect(lateFailure).to.equal(undefined);
      expect(await h.store.getJob(job.id, null)).to.include({
        status: 'running',
        locked_by: 'B',
      });

      const done = await completeOne({ workerId: 'B', job: b!, merchant: { name: 'Etsy' } });
      expect(done?.result).to.deep.equal({ merchant: { name: 'Etsy' } });
    });

    it('changes nothing for writes whose attempt number is stale, from the same worker', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const job = await insertPending(h.db, 'Etsy');
      const claim = () => h!.store.runner.claim({ workerId: 'W', limit: 1, leaseMs: 30_000 });
      const [first] = await claim();
      expect(first?.attempts).to.equal(1);
      // Attempt 1 fails and is retried at once; worker W claims the job again: attempt 2.
      const retried = await h.store.runner.fail({
        workerId: 'W',
        claim: { id: job.id, attempts: 1 },
        error: { code: 'heuristic_error', message: 'attempt 1 failed', attempt: 1 },
        retry: true,
        retryDelayMs: 0,
      });
      expect(retried?.status).to.equal('pending');
      const [second] = await claim();
      expect(second).to.include({ id: job.id, attempts: 2, locked_by: 'W' });
      const before = await h.store.getJob(job.id, null);

      // Everything below carries W's id, but attempt 1's claim: all of it is fenced off.
      const stale = { id: job.id, attempts: 1 };
      expect(
        await completeOne({ workerId: 'W', job: first!, merchant: { name: 'stale' } }),
      ).to.equal(undefined);
      expect(
        await h.store.runner.fail({
          workerId: 'W',
          claim: stale,
          error: { code: 'heuristic_error', message: 'stale', attempt: 1 },
          retry: false,
          retryDelayMs: 0,
        }),
      ).to.equal(undefined);
      const renewed = await h.store.runner.renew({
        workerId: 'W',
        claims: [stale],
        leaseMs: 3_600_000,
      });
      expect([...renewed]).to.deep.equal([]);
      expect(await h.store.runner.release({ workerId: 'W', claims: [stale] })).to.equal(0);
      // Unchanged, but for when it was read.
      const { read_at: _readAt, ...after } = (await h.store.getJob(job.id, null))!;
      const { read_at: _readBefore, ...unchanged } = before!;
      expect(after).to.deep.equal(unchanged);

      // Attempt 2's own claim still holds.
      const done = await completeOne({ workerId: 'W', job: second!, merchant: { name: 'Etsy' } });
      expect(done).to.include({ status: 'succeeded', attempts: 2 });
    });

    it('renews the lease while a long attempt runs, so it is never reaped', async () => {
      const heuristic = new TestHeuristic(echoAfter(1200));
      h = await startHarness({ heuristic, runner: { leaseMs: 300 } });
      const id = await submit('Long');
      // A reaper sweeping every 50 ms for as long as the attempt runs (four leases).
      let reaped = 0;
      let over = false;
      const reaper = (async () => {
        while (!over) {
          const r = await h.store.runner.reap({ limit: 10 });
          reaped += r.requeued + r.failed;
          await sleep(50);
        }
      })();
      const row = await finished(id).finally(() => (over = true));
      await reaper;
      expect(reaped).to.equal(0);
      expect(row).to.include({ status: 'succeeded', attempts: 1 });
    });

    it('aborts an attempt whose lease another worker took, and writes nothing', async () => {
      let abortReason: unknown;
      const heuristic = new TestHeuristic(async (_t, signal) => {
        try {
          await sleep(5000, undefined, { signal });
        } catch (err) {
          abortReason = signal.reason;
          throw err;
        }
        return { name: 'too late' };
      });
      h = await startHarness({ heuristic, runner: { leaseMs: 300 } });
      const id = await submit('Stolen');
      await eventually(async () => heuristic.calls.length === 1);
      await h.db('jobs').where({ id }).update({ locked_by: 'thief' });
      await eventually(async () => abortReason !== undefined, 3000, 'the attempt to be aborted');
      expect((abortReason as Error).name).to.equal('LeaseLostError');
      // Once the runner has counted the attempt it writes nothing more for it.
      await eventually(
        async () => (await attemptOutcomes(h!.service.metrics)).lease_lost === 1,
        5000,
        'the attempt to be counted lease_lost',
      );
      expect(await h.store.getJob(id, null)).to.include({
        status: 'running',
        locked_by: 'thief',
        result: null,
      });
    });
  });

  describe('an attempt whose job is canceled before its outcome is written', () => {
    // The runner below has no LISTEN connection, so the cancel's NOTIFY never aborts the
    // attempt: its answer (or failure) meets a fenced write that changes nothing, as it does when
    // the NOTIFY is merely late. It must be counted as canceled, not as a lost lease.
    const cases: Array<[string, (gate: Gate) => TestHeuristic]> = [
      ['answers', (gate) => new TestHeuristic(gate.behaviour)],
      [
        'fails',
        (gate) =>
          new TestHeuristic(async (t, signal, call) => {
            await gate.behaviour(t, signal, call);
            throw new Error('upstream exploded');
          }),
      ],
    ];
    for (const [what, make] of cases) {
      it(`is counted canceled when the heuristic ${what} after the cancel, and writes nothing`, async () => {
        h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
        const gate = new Gate();
        const heuristic = make(gate);
        const other = otherRunner(h.db, heuristic);
        try {
          const id = await submit('Netflix');
          other.runner.start();
          await eventually(async () => heuristic.running === 1, 5000, 'the attempt to start');
          expect((await h.store.cancelJob(id, null))?.previousStatus).to.equal('running');
          gate.release();
          const counted = await eventually(async () => {
            const a = await other.attempts();
            return Object.keys(a).length > 0 && a;
          });
          expect(counted).to.deep.equal({ canceled: 1 });
          expect(await h.store.getJob(id, null)).to.include({
            status: 'canceled',
            result: null,
            error: null,
            locked_by: null,
          });
        } finally {
          await other.stop();
        }
      });
    }
  });

  describe('retention', () => {
    it('purges finished jobs older than the retention period and keeps the rest', async () => {
      h = await startHarness({ heuristic: new TestHeuristic(echoAfter(0)), startRunner: false });
      const old = await insertPending(h.db, 'old');
      const recent = await insertPending(h.db, 'recent');
      const pending = await insertPending(h.db, 'pending');
      const day = 24 * HOUR;
      await h
        .db('jobs')
        .whereIn('id', [old.id, recent.id])
        .update({ status: 'succeeded', result: JSON.stringify({ merchant: null }) });
      await h
        .db('jobs')
        .where({ id: old.id })
        .update({ finished_at: new Date(Date.now() - 8 * day) });
      await h
        .db('jobs')
        .where({ id: recent.id })
        .update({ finished_at: new Date(Date.now() - 1 * day) });
      await h
        .db('jobs')
        .where({ id: pending.id })
        .update({
          created_at: new Date(Date.now() - 30 * day),
          run_after: new Date(Date.now() + day),
        });

      h.runner.start(); // purges on start, then every purgeIntervalMs
      await eventually(async () => !(await h!.store.getJob(old.id, null)), 5000, 'the purge');
      expect(await h.store.getJob(recent.id, null)).to.include({ status: 'succeeded' });
      expect(await h.store.getJob(pending.id, null)).to.include({ status: 'pending' });
    });
  });

  describe('stop()', () => {
    it('lets running attempts finish within the grace period', async () => {
      const heuristic = new TestHeuristic(echoAfter(300));
      h = await startHarness({ heuristic });
      const ids = [await submit('a'), await submit('b')];
      await eventually(async () => heuristic.running === 2);
      await h.runner.stop(5000);
      expect(await jobStatuses(h.db)).to.deep.equal({ succeeded: 2 });
      for (const id of ids) expect((await h.store.getJob(id, null))?.attempts).to.equal(1);
    });

    it('hands attempts that outlive the grace period back as pending, attempt not counted', async () => {
      const heuristic = new TestHeuristic(echoAfter(HOUR));
      h = await startHarness({ heuristic });
      await submit('a');
      await submit('b');
      await eventually(async () => heuristic.running === 2);
      await h.runner.stop(100);
      expect(await jobStatuses(h.db)).to.deep.equal({ pending: 2 });
      const rows = await h.db('jobs').select('attempts', 'locked_by', 'locked_until');
      for (const r of rows)
        expect(r).to.deep.equal({ attempts: 0, locked_by: null, locked_until: null });
      expect(heuristic.running).to.equal(0);
    });

    // One statement each, 10,000 attempts in flight queued 10,000 statements on the pool at
    // shutdown: most timed out waiting for a connection and their jobs stayed running until
    // their leases expired (bench slow10k phase).
    it('hands every interrupted attempt back in one statement, however many there are', async () => {
      const heuristic = new TestHeuristic(echoAfter(HOUR));
      h = await startHarness({ heuristic, runner: { concurrency: 40 } });
      await h.http
        .post('/normalize_merchant/batch')
        .send({ transactions: Array.from({ length: 40 }, (_, i) => tx(`Slow ${i}`)) })
        .expect(202);
      await eventually(async () => heuristic.running === 40, 10_000, '40 attempts running');
      const statements = countAcquisitions(h.service.db); // the service's own pool
      await h.runner.stop(0);
      expect(statements.count, 'connections taken to hand them back').to.equal(1);
      expect(await jobStatuses(h.db)).to.deep.equal({ pending: 40 });
      const rows = await h.db('jobs').select('attempts', 'locked_by', 'locked_until');
      for (const r of rows)
        expect(r).to.deep.equal({ attempts: 0, locked_by: null, locked_until: null });
      expect(heuristic.running).to.equal(0);
    });

    it('claims nothing after stop()', async () => {
      const heuristic = new TestHeuristic(echoAfter(0));
      h = await startHarness({ heuristic, startRunner: false });
      // A job another worker runs: never this runner's to claim; its cancel is the signal below.
      const sentinel = await insertPending(h.db, 'sentinel');
      await h.store.runner.claim({ workerId: 'elsewhere', limit: 1, leaseMs: HOUR });
      h.runner.start();
      await h.runner.stop(0);
      await insertPending(h.db, 'x'); // NOTIFYs the service, which wakes its runner...
      h.runner.wake(); // ...and so does this
      // Announcements arrive in commit order: once the sentinel's cancel is heard, so was x's
      // insert, and a runner that claims would have claimed x (and run it) by the time the
      // sentinel's waiter is answered.
      const waiter = h.http.get(`/jobs/${sentinel.id}?wait=10`).then((r) => r);
      await eventually(async () => h!.events.size === 1, 5000, 'the waiter to register');
      await h.store.cancelJob(sentinel.id, null);
      expect((await waiter).body.status).to.equal('canceled');
      expect(await jobStatuses(h.db)).to.deep.equal({ pending: 1, canceled: 1 });
      expect(heuristic.calls).to.deep.equal([]);
    });
  });
});
