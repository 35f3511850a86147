/**
 * Claiming ahead (Runner.prefetch): for jobs that take a few milliseconds one claim fetches
 * about 20 ms of work per slot (at most 16 jobs per slot), so a claim's round trip is shared by
 * many jobs; for slow jobs a claim asks for the free slots only, so nothing waits here that
 * another process could run.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { insertJob } from '../src/db/sql/submits.js';
import { createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import { Runner } from '../src/runner/runner.js';
import { AttemptStats } from '../src/runner/stats.js';
import { clientId, eventually, freshDatabase, insertPending, jobStatuses } from './support/db.js';
import { Gate, TestHeuristic, echoAfter, echoAtOnce, tx } from './support/heuristics.js';
import { QUIET_TIMERS } from './support/other-runner.js';
import { announcingStore } from './support/process-store.js';

const CONCURRENCY = 4;

/** A runner whose claims are recorded (the limit each asked for), with `meanMs` observed so far. */
function runnerWith(
  db: Knex,
  heuristic: TestHeuristic,
  meanMs: number,
  opts: {
    concurrency?: number;
    beforeComplete?: () => Promise<void>;
    /** Awaited after each claim has come back from the database, before the runner sees it. */
    afterClaim?: () => Promise<void>;
    /** Claims for which this says true fail before they reach the database (1 = the first). */
    claimFails?: (n: number) => boolean;
    /** Every job with a cache key is answered from the cache with this merchant. */
    cachedAnswer?: string;
    /** Told the number of jobs each completing statement carries. */
    onComplete?: (jobs: number) => void;
  } = {},
) {
  const { store } = announcingStore(db);
  const concurrency = opts.concurrency ?? CONCURRENCY;
  const limits: number[] = [];
  /** `runner.prefetch()` when each claim was asked for. */
  const prefetches: number[] = [];
  const runner: Runner = new Runner({
    store: {
      ...store.runner,
      claim: async (claim) => {
        limits.push(claim.limit);
        prefetches.push(runner.prefetch());
        if (opts.claimFails?.(limits.length)) throw new Error('the database went away');
        const jobs = await store.runner.claim(claim);
        await opts.afterClaim?.();
        return jobs;
      },
      beginFlight: (flight) =>
        opts.cachedAnswer === undefined
          ? store.runner.beginFlight(flight)
          : Promise.resolve({ role: 'cached', result: { merchant: { name: opts.cachedAnswer } } }),
      complete: async (items) => {
        opts.onComplete?.(items.items.length);
        await opts.beforeComplete?.();
        return store.runner.complete(items);
      },
    },
    heuristic,
    log: createLogger('silent'),
    stats: new AttemptStats(meanMs),
    metrics: new Metrics({ db, busySlots: () => 0, concurrency, waiters: () => 0 }),
    concurrency,
    leaseMs: 60_000,
    timeoutMs: 60_000,
    ...QUIET_TIMERS,
  });
  return { runner, limits, prefetches };
}

/**
 * Outcome writes held back (runnerWith's `beforeComplete`) until `release()`, which lets the
 * held ones and every later one through.
 */
function heldWrites() {
  let holding = true;
  const held: (() => void)[] = [];
  return {
    beforeComplete: () =>
      holding ? new Promise<void>((resolve) => held.push(resolve)) : Promise.resolve(),
    release: () => {
      holding = false;
      for (const resume of held.splice(0)) resume();
    },
  };
}

/**
 * For runnerWith's `afterClaim`: claims come back as the database answers them, but the second
 * (the slot's next job, once the first claim's job ran) only after `release()`. `onBack` is told
 * the number of each claim as it comes back.
 */
function heldSecondClaim(onBack?: (n: number) => void) {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let claims = 0;
  return {
    afterClaim: async () => {
      const n = ++claims;
      if (n === 2) await held;
      onBack?.(n);
    },
    release: () => release(),
  };
}

describe('Runner: claiming ahead', () => {
  let db: Knex;
  let runner: Runner | undefined;
  beforeEach(async () => {
    db = await freshDatabase(4);
  });
  afterEach(async () => {
    await runner?.stop(0);
    runner = undefined;
    await db.destroy();
  });
  /** Starts `made`'s runner (stopped after the test) and wakes it. */
  const start = (made: { runner: Runner }) => {
    runner = made.runner;
    runner.start();
    runner.wake();
  };

  it('writes the outcomes of a claim of fast jobs in one statement, the first one not alone', async () => {
    for (let i = 0; i < 40; i++) await insertPending(db, `fast ${i}`);
    const heuristic = new TestHeuristic(echoAtOnce);
    const groups: number[] = [];
    const made = runnerWith(db, heuristic, 0.1, { onComplete: (jobs) => groups.push(jobs) });
    start(made);
    await eventually(async () => (await jobStatuses(db)).succeeded === 40);
    expect(made.limits[0], 'the first claim, which takes them all').to.equal(CONCURRENCY * 17);
    expect(groups, 'jobs per completing statement').to.deep.equal([40]);
  });

  it('claims the next fast jobs while the outcomes of the last claim are still being written', async () => {
    for (let i = 0; i < 150; i++) await insertPending(db, `fast ${i}`);
    const heuristic = new TestHeuristic(echoAtOnce);
    const writes = heldWrites();
    const made = runnerWith(db, heuristic, 0.1, { beforeComplete: writes.beforeComplete });
    start(made);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    try {
      // The first claim's 68 jobs run, and their outcomes' write is held; the next claims go out
      // all the same, once half of what a claim fetches ahead is free, up to the bound: as many
      // jobs again as run and wait here (68), whose outcomes are being written.
      await eventually(async () => heuristic.calls.length === 136, 5000, 'more claims to run');
      expect(made.limits[0], 'the first claim').to.equal(CONCURRENCY * 17);
      expect(sum(made.limits), 'jobs claimed').to.equal(2 * CONCURRENCY * 17);
      expect(await jobStatuses(db)).to.deep.equal({ running: 136, pending: 14 });
      expect(sum(made.limits), 'no claim past the bound').to.equal(2 * CONCURRENCY * 17);
    } finally {
      writes.release();
    }
    await eventually(async () => (await jobStatuses(db)).succeeded === 150);
    expect(heuristic.calls.length, 'each job ran once').to.equal(150);
  });

  it('fetches up to 16 jobs per slot for jobs of a fraction of a millisecond, and runs them all', async () => {
    for (let i = 0; i < 100; i++) await insertPending(db, `fast ${i}`);
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour);
    const made = runnerWith(db, heuristic, 0.1);
    start(made);
    await eventually(async () => heuristic.running === CONCURRENCY);
    expect(made.limits[0], 'the first claim').to.equal(CONCURRENCY * 17);
    expect(await jobStatuses(db)).to.deep.equal({ running: 68, pending: 32 });
    gate.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 100);
  });

  it('fetches about 20 ms of work per slot for jobs of a few milliseconds', () => {
    const made = runnerWith(db, new TestHeuristic(echoAfter(0)), 5);
    runner = made.runner;
    expect(runner.prefetch()).to.equal(CONCURRENCY * 4);
    expect(runnerWith(db, new TestHeuristic(echoAfter(0)), 20).runner.prefetch()).to.equal(
      CONCURRENCY,
    );
  });

  it('asks for the free slots only when jobs take 50 ms or more', async () => {
    for (let i = 0; i < 10; i++) await insertPending(db, `slow ${i}`);
    const gate = new Gate();
    const heuristic = new TestHeuristic(gate.behaviour);
    const made = runnerWith(db, heuristic, 50);
    start(made);
    await eventually(async () => heuristic.running === CONCURRENCY);
    expect(made.limits[0]).to.equal(CONCURRENCY);
    expect(await jobStatuses(db)).to.deep.equal({ running: CONCURRENCY, pending: 6 });
    gate.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 10);
  });

  // A claim costs about as much for 1 job as for 100; claiming after every completion group
  // averaged 10 jobs a claim in the 20,000-job drain.
  it('with fetched work still waiting, claims again only once half of it has run', async () => {
    for (let i = 0; i < 300; i++) await insertPending(db, `fast ${i}`);
    const made = runnerWith(db, new TestHeuristic(echoAfter(0)), 0.1);
    start(made);
    await eventually(async () => (await jobStatuses(db)).succeeded === 300);
    expect(made.limits[0]).to.equal(CONCURRENCY * 17);
    // The prefetch follows the durations observed, so each claim is judged by its own.
    made.limits.forEach((limit, i) => {
      const half = Math.ceil((made.prefetches[i] ?? 0) / 2);
      expect(limit, `claim ${i} of ${made.limits.length}`).to.be.at.least(Math.max(1, half));
    });
  });

  // A slot bounds heuristic calls, not writes: attempts that finish while an outcome is being
  // written run on, and their outcomes join the next group commit. Holding the slot through the
  // write made the 20,000-job drain run at most `concurrency` jobs per completion statement.
  it('frees the slot once the heuristic returned, while the outcome is still being written', async () => {
    for (let i = 0; i < 3; i++) await insertPending(db, `job ${i}`);
    const heuristic = new TestHeuristic(echoAfter(0));
    const writes = heldWrites();
    const made = runnerWith(db, heuristic, 0.1, {
      concurrency: 1,
      beforeComplete: writes.beforeComplete,
    });
    start(made);
    // One slot, and the first outcome's write is held: the other two jobs still run.
    await eventually(async () => heuristic.calls.length === 3);
    expect(await jobStatuses(db)).to.deep.equal({ running: 3 });
    expect(heuristic.maxRunning, 'heuristic calls at once').to.equal(1);
    expect(made.runner.busySlots, 'slots in use while the writes wait').to.equal(0);
    writes.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 3);
    expect(heuristic.calls.length, 'each job ran once').to.equal(3);
  });

  // Without fetching ahead (slow jobs), a slot whose job's outcome is being written gets its next
  // job at once; before, the next claim waited for the write, so each slot sat idle for a commit
  // and a claim's round trip per job (utilization 98.8-99.3 % with 1 s jobs).
  it('claims the next job for a slot while the last outcome is still being written, up to one per slot', async () => {
    for (let i = 0; i < 3; i++) await insertPending(db, `slow ${i}`);
    const heuristic = new TestHeuristic(echoAfter(0));
    const writes = heldWrites();
    // Jobs of a second so far (no fetching ahead); these answer at once, but their durations are
    // recorded only once written, so the runner's view stays at a second while the writes wait.
    const made = runnerWith(db, heuristic, 1000, {
      concurrency: 1,
      beforeComplete: writes.beforeComplete,
    });
    start(made);
    // The first outcome's write is held: the slot's next job is claimed and run all the same.
    await eventually(async () => heuristic.calls.length === 2, 5000, 'a second job to run');
    expect(made.limits.slice(0, 2), 'each claim asked for the one slot').to.deep.equal([1, 1]);
    // Both outcomes held now: one claim per slot beyond the slots is the bound, the third waits.
    expect(await jobStatuses(db)).to.deep.equal({ running: 2, pending: 1 });
    expect(made.limits, 'no claim past the bound').to.have.length(2);
    writes.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 3);
    expect(heuristic.calls.length, 'each job ran once').to.equal(3);
  });

  // Sent together, the completion and the claim of the slot's next job shared the two cores, and
  // the claim took longer while the slot sat idle (1 s jobs: utilization 98.5-98.7 %, 98.6-99.1 %
  // with the write after the claim).
  it("writes a slow job's outcome once the claim of its slot's next job has come back", async () => {
    for (let i = 0; i < 2; i++) await insertPending(db, `slow ${i}`);
    const heuristic = new TestHeuristic(echoAfter(0));
    const order: string[] = [];
    // The first claim comes back at once; the second (the slot's next job) when released.
    const claims = heldSecondClaim((n) => order.push(`claim ${n} back`));
    const made = runnerWith(db, heuristic, 1000, {
      concurrency: 1,
      afterClaim: claims.afterClaim,
      beforeComplete: async () => void order.push('outcome written'),
    });
    start(made);
    await eventually(async () => made.limits.length === 2, 5000, "the slot's next claim");
    claims.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 2);
    expect(order.slice(0, 3)).to.deep.equal(['claim 1 back', 'claim 2 back', 'outcome written']);
  });

  it('writes an answer from the cache at once, without waiting for the claim of its slot', async () => {
    const owner = await clientId(db, 'a');
    await insertJob(db, {
      id: randomUUID(),
      clientId: owner,
      transaction: tx('cached'),
      maxAttempts: 3,
      cacheKey: 'a cached key',
    });
    await insertPending(db, 'slow');
    const heuristic = new TestHeuristic(echoAfter(0));
    const claims = heldSecondClaim();
    const made = runnerWith(db, heuristic, 1000, {
      concurrency: 1,
      cachedAnswer: 'Netflix',
      afterClaim: claims.afterClaim,
    });
    start(made);
    // The cached job's outcome is written while the slot's next claim is held.
    await eventually(
      async () => (await jobStatuses(db)).succeeded === 1,
      5000,
      'the cached answer',
    );
    expect(heuristic.calls, 'heuristic calls so far').to.have.length(0);
    claims.release();
    await eventually(async () => (await jobStatuses(db)).succeeded === 2);
  });

  it("writes a slow job's outcome when the claim of its slot's next job fails", async () => {
    for (let i = 0; i < 2; i++) await insertPending(db, `slow ${i}`);
    const heuristic = new TestHeuristic(echoAfter(0));
    const made = runnerWith(db, heuristic, 1000, { concurrency: 1, claimFails: (n) => n === 2 });
    start(made);
    // The write waits for no claim that will not come (if a failed claim did not let the writes
    // waiting on it go, this would time out), and once written the slot claims again.
    await eventually(async () => (await jobStatuses(db)).succeeded === 2, 5000, 'both outcomes');
  });
});
