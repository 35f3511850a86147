/**
 * The bench's clients in processes of their own (bench/child.ts): a child gets its input whole
 * and its answer comes back, however large the input. The long-poll phase hands its child 1,000
 * job ids (more with BENCH_LONGPOLL_WAITERS), more than one environment variable can hold on
 * Linux (128 KiB), where the input used to travel.
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { inChild } from '../bench/child.js';

const ECHO = fileURLToPath(new URL('./fixtures/echo-child.ts', import.meta.url));

describe('bench/child.ts', function () {
  // A child is a new Node process loading TypeScript through tsx.
  this.timeout(30_000);

  it('hands a child an input larger than an environment variable can hold, and gets its answer', async () => {
    const ids = Array.from({ length: 5000 }, (_, i) => crypto.randomUUID() + String(i));
    expect(JSON.stringify({ ids }).length).to.be.above(128 * 1024);
    const back = await inChild<{ ids: string[] }>(ECHO, { ids });
    expect(back.ids).to.deep.equal(ids);
  });
});
