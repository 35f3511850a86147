/**
 * GroupCommit on its own: which items travel together, who gets which result, and what a
 * failed write does to its group and to the next one. The write is a function the test holds
 * open and settles, so every interleaving here is explicit, not timed.
 */
import { expect } from 'chai';
import { GroupCommit } from '../src/group-commit.js';

/** A write whose every call waits until the test settles it. */
class HeldWrite<I, O> {
  readonly calls: Array<{ items: I[]; resolve: (out: O[]) => void; reject: (e: unknown) => void }> =
    [];

  readonly write = (items: I[]): Promise<O[]> =>
    new Promise<O[]>((resolve, reject) => this.calls.push({ items, resolve, reject }));

  /** The `n`th call (from 0), once it has been made. */
  async call(n: number) {
    for (let turn = 0; turn < 100 && this.calls.length <= n; turn++) await settle();
    const call = this.calls[n];
    if (!call) throw new Error(`write #${n} was never called (calls: ${this.calls.length})`);
    return call;
  }
}

/** Lets queued promise callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The outcome of a promise, for comparing many at once. */
const outcome = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value }),
    (err: unknown) => ({ error: (err as Error).message }),
  );

describe('GroupCommit', () => {
  it('writes an item at once when idle, and hands each caller its own result', async () => {
    const held = new HeldWrite<string, string>();
    const commit = new GroupCommit(held.write);
    const a = commit.submit('a');
    await settle();
    expect(
      held.calls,
      'written within the turn of the event loop it was submitted in',
    ).to.have.length(1);
    const first = await held.call(0);
    expect(first.items).to.deep.equal(['a']);
    first.resolve(['A']);
    expect(await a).to.equal('A');
  });

  it('writes the items submitted in one burst of promise callbacks together, the first not alone', async () => {
    const held = new HeldWrite<number, number>();
    const commit = new GroupCommit(held.write);
    // As a claim's fast jobs finish: the first submits at once, each other one from its own
    // promise callbacks, some several awaits deep.
    const job = async (i: number) => {
      for (let hop = 0; hop < i; hop++) await Promise.resolve();
      return commit.submit(i);
    };
    const results = [0, 1, 2, 3, 4].map(job);
    const first = await held.call(0);
    expect(first.items).to.deep.equal([0, 1, 2, 3, 4]);
    first.resolve([0, 10, 20, 30, 40]);
    expect(await Promise.all(results)).to.deep.equal([0, 10, 20, 30, 40]);
    expect(held.calls).to.have.length(1);
  });

  it('puts the items that arrive during a write into the next write, in arrival order', async () => {
    const held = new HeldWrite<number, number>();
    const commit = new GroupCommit(held.write);
    const results = [commit.submit(1)];
    const first = await held.call(0);
    results.push(commit.submit(2), commit.submit(3), commit.submit(4));
    await settle();
    expect(held.calls, 'no second write while the first runs').to.have.length(1);
    first.resolve([10]);
    const second = await held.call(1);
    expect(second.items).to.deep.equal([2, 3, 4]);
    second.resolve([20, 30, 40]);
    expect(await Promise.all(results)).to.deep.equal([10, 20, 30, 40]);
    expect(held.calls).to.have.length(2);
  });

  it('maps results by position: distinct callers get distinct answers, even for equal items', async () => {
    const held = new HeldWrite<string, string>();
    const commit = new GroupCommit(held.write);
    const first = commit.submit('x');
    const call0 = await held.call(0);
    const group = ['x', 'y', 'x'].map((item) => commit.submit(item));
    call0.resolve(['x#0']);
    const call1 = await held.call(1);
    call1.resolve(['x#1', 'y#2', 'x#3']);
    expect(await first).to.equal('x#0');
    expect(await Promise.all(group)).to.deep.equal(['x#1', 'y#2', 'x#3']);
  });

  it('rejects exactly the items of a failed write; the next group still writes', async () => {
    const held = new HeldWrite<string, string>();
    const commit = new GroupCommit(held.write);
    const lead = outcome(commit.submit('lead'));
    const call0 = await held.call(0);
    const doomed = ['a', 'b'].map((item) => outcome(commit.submit(item)));
    call0.resolve(['LEAD']);
    const call1 = await held.call(1);
    expect(call1.items).to.deep.equal(['a', 'b']);
    // Arrives while the doomed write runs: belongs to the write after it.
    const later = outcome(commit.submit('c'));
    call1.reject(new Error('connection reset'));
    const call2 = await held.call(2);
    expect(call2.items).to.deep.equal(['c']);
    call2.resolve(['C']);
    expect(await lead).to.deep.equal({ value: 'LEAD' });
    expect(await Promise.all(doomed)).to.deep.equal([
      { error: 'connection reset' },
      { error: 'connection reset' },
    ]);
    expect(await later).to.deep.equal({ value: 'C' });
  });

  it('keeps writing after a failure when idle: the next submit starts a write of its own', async () => {
    const held = new HeldWrite<string, string>();
    const commit = new GroupCommit(held.write);
    const failed = outcome(commit.submit('a'));
    (await held.call(0)).reject(new Error('deadlock detected'));
    expect(await failed).to.deep.equal({ error: 'deadlock detected' });
    const next = commit.submit('b');
    const call1 = await held.call(1);
    expect(call1.items).to.deep.equal(['b']);
    call1.resolve(['B']);
    expect(await next).to.equal('B');
  });

  it('rejects the group when the write throws synchronously, without stalling later items', async () => {
    let calls = 0;
    const commit = new GroupCommit<string, string>((items) => {
      calls += 1;
      if (calls === 1) throw new Error('bad statement');
      return Promise.resolve(items.map((i) => i.toUpperCase()));
    });
    expect(await outcome(commit.submit('a'))).to.deep.equal({ error: 'bad statement' });
    expect(await commit.submit('b')).to.equal('B');
  });

  it('splits what queued during a write into writes of at most maxItems, oldest first', async () => {
    const held = new HeldWrite<number, number>();
    const commit = new GroupCommit(held.write, 2);
    const results = [commit.submit(0)];
    const call0 = await held.call(0);
    for (let i = 1; i <= 5; i++) results.push(commit.submit(i));
    call0.resolve([0]);
    const sizes: number[][] = [];
    for (let n = 1; n <= 3; n++) {
      const call = await held.call(n);
      sizes.push(call.items);
      call.resolve(call.items.map((i) => i * 10));
    }
    expect(sizes).to.deep.equal([[1, 2], [3, 4], [5]]);
    expect(await Promise.all(results)).to.deep.equal([0, 10, 20, 30, 40, 50]);
    expect(held.calls).to.have.length(4);
  });
});
