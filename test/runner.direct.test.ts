/**
 * A single submit started at once (Runner.reserve): when this process's runner has a slot free
 * beyond the pending jobs it knows of, the job is inserted already running under its claim and
 * skips the claim (one statement, one row version and one round trip less on its way to a
 * result). It must never take a slot a pending job waits for, and a job so inserted must end
 * like any claimed one: run once, handed back on shutdown.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { type JobToInsert, insertJob, insertJobs } from '../src/db/sql/submits.js';
import type { JobRow } from '../src/db/sql/rows.js';
import { createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import { Admission } from '../src/jobs/admission.js';
import { QueueEstimator } from '../src/jobs/eta.js';
import { JobEvents } from '../src/jobs/hub.js';
import { Jobs } from '../src/jobs/usecases.js';
import { Runner } from '../src/runner/runner.js';
import { AttemptStats } from '../src/runner/stats.js';
import { clientId, eventually, freshDatabase, insertPending, jobStatuses } from './support/db.js';
import { Gate, TestHeuristic, echoAfter, tx } from './support/heuristics.js';
import { QUIET_TIMERS } from './support/other-runner.js';
import { announcingStore } from './support/process-store.js';

const LEASE_MS = 60_000;

/**
 * A runner on `db` whose claims are counted (`claims`: the jobs each one returned), and its
 * reaper passes (`reaps`).
 */
function runnerOn(
  db: Knex,
  heuristic: TestHeuristic,
  concurrency: number,
  afterClaim?: () => Promise<void>,
) {
  const { store } = announcingStore(db);
  const claims: number[] = [];
  let reaps = 0;
  const runner = new Runner({
    store: {
      ...store.runner,
      reap: async (opts) => {
        const reaped = await store.runner.reap(opts);
        reaps += 1;
        return reaped;
      },
      claim: async (claim) => {
        const jobs = await store.runner.claim(claim);
        await afterClaim?.();
        claims.push(jobs.length);
        return jobs;
      },
    },
    heuristic,
    log: createLogger('error'),
    // Jobs of a second: no fetching ahead, so the free slots are the slots.
    stats: new AttemptStats(1000),
    metrics: new Metrics({ db, busySlots: () => 0, concurrency, waiters: () => 0 }),
    concurrency,
    leaseMs: LEASE_MS,
    timeoutMs: 60_000,
    ...QUIET_TIMERS,
  });
  return { runner, claims, reaps: () => reaps };
}

describe('Runner: a submit started at once', () => {
  let db: Knex;
  let owner: string;
  let runner: Runner | undefined;
  beforeEach(async () => {
    db = await freshDatabase(4);
    owner = await clientId(db);
  });
  afterEach(async () => {
    await runner?.stop(0);
    runner = undefined;
    await db.destroy();
  });

  const job = (description: string, extra: Partial<JobToInsert> = {}): JobToInsert => ({
    id: randomUUID(),
    clientId: owner,
    transaction: tx(description),
    maxAttempts: 3,
    ...extra,
  });

  /** Submits as the use-case does: reserve, insert (running if reserved), settle. */
  async function submit(r: Runner, description: string): Promise<JobRow> {
    const slot = r.reserve();
    let row: JobRow | undefined;
    try {
      ({ row } = await insertJob(db, job(description, { runBy: slot })));
    } finally {
      slot?.settle(row);
    }
    if (row.status === 'pending') r.queued(1);
    return row;
  }

  /**
   * Started, with the queue known drained: a claim came back empty after the start-up reaper
   * pass, which wakes the runner too (a slot given before that wake-up would be taken back by
   * it, and its claim counted after this returns). Returns the number of claims made so far.
   */
  async function started(made: ReturnType<typeof runnerOn>): Promise<number> {
    runner = made.runner;
    made.runner.start();
    made.runner.wake();
    await eventually(async () => made.reaps() > 0, 5000, 'the start-up reaper pass');
    const slot = await eventually(async () => made.runner.reserve(), 5000, 'a slot to be given');
    slot.settle(undefined);
    return made.claims.length;
  }

  it('inserts the job running under the runner’s claim, runs it without a claim, and completes it', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    const made = runnerOn(db, heuristic, 2);
    const before = await started(made);
    const row = await submit(made.runner, 'Netflix');
    expect(row).to.include({ status: 'running', attempts: 1, locked_by: made.runner.workerId });
    expect(row.started_at, 'started when stored').to.be.instanceOf(Date);
    const leaseMs = row.locked_until!.getTime() - row.started_at!.getTime();
    expect(leaseMs, 'the runner’s lease').to.be.closeTo(LEASE_MS, 5);
    await eventually(async () => (await jobStatuses(db)).succeeded === 1);
    expect(heuristic.calls.map((t) => t.description)).to.deep.equal(['Netflix']);
    expect(made.claims.slice(before), 'no claim since').to.deep.equal([]);
    expect(made.claims, 'none found anything').to.not.include(1);
  });

  it('gives no slot before a claim has found the queue drained, nor after a wake-up from elsewhere', async () => {
    const made = runnerOn(db, new TestHeuristic(echoAfter(0)), 2);
    expect(made.runner.reserve(), 'not started').to.equal(undefined);
    runner = made.runner;
    made.runner.start();
    expect(made.runner.reserve(), 'started, nothing claimed yet').to.equal(undefined);
    made.runner.wake();
    const slot = await eventually(async () => made.runner.reserve(), 5000, 'a claim to drain');
    slot.settle(undefined);
    // Another process announced jobs: they may be due, and older than the next submit.
    made.runner.wake();
    expect(made.runner.reserve(), 'woken from elsewhere').to.equal(undefined);
    const claims = made.claims.length;
    const again = await eventually(async () => made.runner.reserve(), 5000, 'drained again');
    expect(made.claims.length, 'by a claim').to.be.greaterThan(claims);
    again.settle(undefined);
  });

  it('leaves a slot to every pending job it knows of, even one whose claim is on its way', async () => {
    const gate = new Gate();
    let releaseClaim: (() => void) | undefined;
    let holdClaims = false;
    const heuristic = new TestHeuristic(gate.behaviour);
    const made = runnerOn(db, heuristic, 2, async () => {
      if (holdClaims) await new Promise<void>((resolve) => (releaseClaim = resolve));
    });
    const before = await started(made);
    // One slot taken by a job started at once.
    expect((await submit(made.runner, 'first')).status).to.equal('running');
    // A job queued here while the other slot is free: its claim is held on its way back.
    holdClaims = true;
    const queued = await insertJob(db, job('queued'));
    made.runner.queued(1);
    await eventually(async () => releaseClaim, 5000, 'the queued job’s claim');
    // The free slot is the queued job's: a new submit must not take it.
    const third = await submit(made.runner, 'third');
    expect(third.status, 'the third submit, with the free slot promised').to.equal('pending');
    holdClaims = false;
    releaseClaim!();
    await eventually(
      async () => heuristic.calls.some((t) => t.description === 'queued'),
      5000,
      'the queued job to run',
    );
    expect(queued.row.status).to.equal('pending');
    expect(made.claims[before], 'the held claim took the queued job').to.equal(1);
    gate.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 3);
  });

  it('gives a slot back when the insert stored nothing, and holds each slot once', async () => {
    const made = runnerOn(db, new TestHeuristic(echoAfter(0)), 1);
    await started(made);
    const slot = made.runner.reserve();
    expect(slot).to.not.equal(undefined);
    expect(made.runner.reserve(), 'the one slot is promised').to.equal(undefined);
    slot!.settle(undefined);
    slot!.settle(undefined); // twice changes nothing
    const again = made.runner.reserve();
    expect(again, 'given back').to.not.equal(undefined);
    expect(made.runner.reserve(), 'and promised once only').to.equal(undefined);
    again!.settle(undefined);
  });

  it('hands a job inserted running back as pending when the runner stopped before it was settled', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    const made = runnerOn(db, heuristic, 1);
    await started(made);
    const slot = made.runner.reserve();
    const { row } = await insertJob(db, job('late', { runBy: slot }));
    expect(row.status).to.equal('running');
    await made.runner.stop(0);
    slot!.settle(row);
    await eventually(async () => (await jobStatuses(db)).pending === 1, 5000, 'the hand-back');
    const [back] = await db('jobs').select('attempts', 'locked_by');
    expect(back).to.deep.equal({ attempts: 0, locked_by: null });
    expect(heuristic.calls, 'not run').to.have.length(0);
  });

  it('hands back a job whose insert committed but did not answer, and runs it once', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    const made = runnerOn(db, heuristic, 1);
    await started(made);
    const slot = made.runner.reserve()!;
    const lost = job('answer lost', { runBy: slot });
    // Committed, running under the runner's claim, but the answer never reached the submit.
    expect((await insertJob(db, lost)).row.status).to.equal('running');
    slot.failed(lost.id);
    await eventually(async () => (await jobStatuses(db)).succeeded === 1, 5000, 'the job to run');
    const [row] = await db('jobs').select('attempts');
    expect(row, 'the lost answer cost no attempt').to.deep.equal({ attempts: 1 });
    expect(heuristic.calls.map((t) => t.description)).to.deep.equal(['answer lost']);
    // An insert that stored nothing: its slot comes back all the same.
    made.runner.reserve()!.failed(randomUUID());
    await eventually(async () => made.runner.reserve(), 5000, 'the slot given back').then((again) =>
      again.settle(undefined),
    );
  });

  it('submits through the use-case: an insert that committed but failed to answer is handed back and run', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    const made = runnerOn(db, heuristic, 1);
    await started(made);
    const { store } = announcingStore(db);
    const estimator = new QueueEstimator(store, new AttemptStats(1000), 1);
    const jobs = new Jobs({
      // The connection drops after the commit, before the row comes back.
      store: {
        ...store,
        insertJob: async (toInsert) => {
          await store.insertJob(toInsert);
          throw new Error('Connection terminated unexpectedly');
        },
      },
      admission: new Admission(store, estimator, { clientMaxPending: 100, maxPending: 100 }),
      estimator,
      events: new JobEvents(),
      jobMaxAttempts: 3,
      jobRetentionMs: 60_000,
      cacheKey: () => null,
      onJobSubmitted: (pending) => made.runner.queued(pending),
      reserveSlot: () => made.runner.reserve(),
    });
    const submitted = await jobs.submitJob(owner, tx('answer lost')).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(submitted, 'the submit fails').to.be.instanceOf(Error);
    await eventually(async () => (await jobStatuses(db)).succeeded === 1, 5000, 'the job to run');
    expect(heuristic.calls, 'run once').to.have.length(1);
  });

  it('stores a grouped insert with each job as asked: running, pending, or answered by the cache', async () => {
    await db.raw(
      `INSERT INTO results (cache_key, result, expires_at) VALUES ('k-hit', '{"merchant": null}', now() + interval '1 hour')`,
    );
    const runBy = { workerId: 'w1', leaseMs: 30_000 };
    for (const cached of [false, true]) {
      const key = (k: string) => (cached ? k : null);
      const stored = await insertJobs(
        db,
        [
          job('runs', { runBy, cacheKey: key('k-run') }),
          job('waits', { cacheKey: key('k-wait') }),
          job('hit', { runBy, cacheKey: key('k-hit') }),
        ],
        cached,
      );
      const rows = stored.map((s) => s.row!);
      expect(rows.map((r) => [r.status, r.locked_by, r.attempts])).to.deep.equal([
        ['running', 'w1', 1],
        ['pending', null, 0],
        // Without a cache key there is nothing to answer it from: it runs.
        cached ? ['succeeded', null, 0] : ['running', 'w1', 1],
      ]);
      expect(rows[1]!.started_at, 'pending: not started').to.equal(null);
      expect(rows[0]!.locked_until!.getTime() - rows[0]!.started_at!.getTime()).to.be.closeTo(
        30_000,
        5,
      );
      await db('jobs').delete();
    }
  });

  it('runs the jobs of another process as before: a pending job announced is claimed', async () => {
    const heuristic = new TestHeuristic(echoAfter(0));
    const made = runnerOn(db, heuristic, 2);
    const before = await started(made);
    await insertPending(db, 'elsewhere');
    made.runner.wake(); // the NOTIFY
    await eventually(async () => (await jobStatuses(db)).succeeded === 1);
    expect(made.claims.slice(before), 'the claim after the NOTIFY found it').to.deep.equal([1]);
  });
});
