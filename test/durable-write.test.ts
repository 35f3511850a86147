import { expect } from 'chai';
import { Hold, WriteAbandoned, untilWritten } from '../src/runner/durable-write.js';

/** An error the retry loop treats as transient (a dropped connection). */
const dropped = () => Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });

describe('recording through an outage (src/runner/durable-write.ts)', () => {
  describe('Hold', () => {
    it('aborts a signal made before the abort', () => {
      const held = new Hold();
      const signal = held.signal;
      expect(signal.aborted).to.equal(false);
      held.abort();
      expect(held.aborted).to.equal(true);
      expect(signal.aborted).to.equal(true);
    });

    it('hands out an aborted signal when it is first asked for after the abort', () => {
      const held = new Hold();
      held.abort();
      expect(held.signal.aborted).to.equal(true);
    });
  });

  describe('untilWritten', () => {
    it('answers what the first try wrote, without retrying', async () => {
      let tries = 0;
      const out = await untilWritten(() => Promise.resolve(++tries), { held: new Hold() });
      expect(out).to.equal(1);
      expect(tries).to.equal(1);
    });

    it('retries a transient error, telling onRetry, until the write lands', async () => {
      let tries = 0;
      const retries: number[] = [];
      const out = await untilWritten(
        () => (++tries < 3 ? Promise.reject(dropped()) : Promise.resolve('written')),
        { held: new Hold(), baseMs: 1, onRetry: (_err, n) => retries.push(n) },
      );
      expect(out).to.equal('written');
      expect(retries).to.deep.equal([1, 2]);
    });

    it('rejects at once with an error retrying cannot fix, thrown or rejected', async () => {
      const refused = new Error('check constraint');
      for (const write of [
        () => Promise.reject(refused),
        (): Promise<never> => {
          throw refused;
        },
      ]) {
        const err: unknown = await untilWritten(write, { held: new Hold() }).catch((e) => e);
        expect(err).to.equal(refused);
      }
    });

    it('gives up without writing once the claim is gone, also in the middle of a wait', async () => {
      const gone = new Hold();
      gone.abort();
      let wrote = false;
      const before: unknown = await untilWritten(() => Promise.resolve((wrote = true)), {
        held: gone,
      }).catch((e) => e);
      expect(before).to.be.instanceOf(WriteAbandoned);
      expect(wrote).to.equal(false);

      // A retry waiting 60 s is cut short when the hold is aborted.
      const held = new Hold();
      let tries = 0;
      const started = performance.now();
      const pending = untilWritten(
        () => {
          tries += 1;
          return Promise.reject(dropped());
        },
        { held, baseMs: 60_000, onRetry: () => setImmediate(() => held.abort()) },
      ).catch((e: unknown) => e);
      const during = await pending;
      expect(during).to.be.instanceOf(WriteAbandoned);
      expect((during as WriteAbandoned).tries).to.equal(1);
      expect(tries).to.equal(1);
      expect(performance.now() - started).to.be.below(10_000);
    });
  });
});
