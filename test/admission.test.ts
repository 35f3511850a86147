/**
 * Admission's pending counts (src/jobs/admission.ts): a submit waits for a count only when none
 * was read yet or the last one would refuse it; a stale count that admits is read again in the
 * background; a slow count (a backlog of a million jobs) is read at most a tenth of the time.
 * The store's counts are promises the test settles, and the clock is the test's.
 */
import { expect } from 'chai';
import { QuotaExceededError } from '../src/errors.js';
import { Admission } from '../src/jobs/admission.js';
import type { QueueEstimator } from '../src/jobs/eta.js';

interface Read {
  clientId: string | undefined;
  resolve: (n: number) => void;
  reject: (err: unknown) => void;
}

/** countPending calls held until the test answers them. */
class HeldCounts {
  readonly reads: Read[] = [];
  readonly store = {
    countPending: (opts: { clientId?: string; cap: number }) =>
      new Promise<number>((resolve, reject) =>
        this.reads.push({ clientId: opts.clientId, resolve, reject }),
      ),
  };
  /** Answers every read not answered yet: `global` for the global count, `client` for the client's. */
  answer(global: number, client: number) {
    for (const r of this.reads.splice(0)) r.resolve(r.clientId === undefined ? global : client);
  }
}

const estimator = { forBacklog: () => Promise.resolve(1) } as unknown as QueueEstimator;
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('Admission', () => {
  let clock: number;
  let counts: HeldCounts;
  let admission: Admission;
  beforeEach(() => {
    clock = 1_000_000;
    counts = new HeldCounts();
    admission = new Admission(counts.store, estimator, {
      clientMaxPending: 10,
      maxPending: 100,
      refreshMs: 1000,
      now: () => clock,
    });
  });

  /** Admits and reports whether it settled (true), was refused (Error) or still waits (undefined). */
  async function admit(n: number) {
    let outcome: true | Error | undefined;
    admission.admit('a', n).then(
      () => (outcome = true),
      (err: Error) => (outcome = err),
    );
    await settle();
    return { outcome: () => outcome };
  }

  it('waits for the first count', async () => {
    const first = await admit(1);
    expect(first.outcome()).to.equal(undefined);
    expect(counts.reads).to.have.length(2);
    counts.answer(0, 0);
    await settle();
    expect(first.outcome()).to.equal(true);
  });

  it('admits at once on a stale count that admits, and reads it again in the background', async () => {
    const first = await admit(1);
    counts.answer(0, 0);
    await settle();
    expect(first.outcome()).to.equal(true);
    clock += 1500; // stale
    const second = await admit(1);
    expect(second.outcome(), 'not held up by the count').to.equal(true);
    expect(counts.reads, 'both counts read again').to.have.length(2);
    counts.answer(50, 9);
    await settle();
    const third = await admit(1);
    expect(third.outcome(), 'on the new count: 9 + 1').to.equal(true);
    const fourth = await admit(1);
    expect(fourth.outcome()).to.be.instanceOf(QuotaExceededError);
  });

  it('waits for a new count when the last one would refuse, and admits if jobs started meanwhile', async () => {
    const first = await admit(1);
    counts.answer(0, 10); // the client is at its cap
    await settle();
    expect(first.outcome()).to.be.instanceOf(QuotaExceededError);
    clock += 200; // past the recheck interval, within the refresh
    const second = await admit(1);
    expect(second.outcome(), 'waits for the count').to.equal(undefined);
    counts.answer(0, 3);
    await settle();
    expect(second.outcome()).to.equal(true);
  });

  it('reads a slow count at most a tenth of the time', async () => {
    const first = await admit(1);
    clock += 400; // the count took 400 ms (a backlog of about a million)
    counts.answer(0, 0);
    await settle();
    expect(first.outcome()).to.equal(true);
    clock += 1500; // stale by refreshMs, not by ten times 400 ms
    await admit(1);
    expect(counts.reads, 'trusted for 4 s').to.have.length(0);
    clock += 2600;
    await admit(1);
    expect(counts.reads).to.have.length(2);
    counts.answer(0, 0);
  });

  it('a failed background count is read again by the next submit; the submit is admitted', async () => {
    await admit(1);
    counts.answer(0, 0);
    await settle();
    clock += 1500;
    const second = await admit(1);
    expect(second.outcome()).to.equal(true);
    for (const r of counts.reads.splice(0)) r.reject(new Error('database unreachable'));
    await settle();
    const third = await admit(1);
    expect(third.outcome()).to.equal(true);
    expect(counts.reads, 'read again').to.have.length(2);
    counts.answer(0, 0);
  });
});
