import { setTimeout as sleep } from 'node:timers/promises';
import type { Heuristic, Merchant, Transaction } from '../../src/heuristic/types.js';

export type Behaviour = (
  tx: Transaction,
  signal: AbortSignal,
  call: number,
) => Promise<Merchant | null>;

/**
 * A real Heuristic implementation for tests: runs `behaviour` and measures what the runner did
 * with it (calls, and how many ran at once).
 */
export class TestHeuristic implements Heuristic {
  readonly calls: Transaction[] = [];
  running = 0;
  maxRunning = 0;

  /**
   * @param keyed - key transactions by description (result cache and single-flight apply);
   *   by default nothing is cacheable, so every job calls the heuristic.
   * @param version - what the result cache keys carry besides the key.
   */
  constructor(
    private readonly behaviour: Behaviour,
    private readonly keyed = false,
    readonly version: string = 'test-1',
  ) {}

  key(tx: Transaction): string | null {
    return this.keyed ? tx.description : null;
  }

  async match(tx: Transaction, signal: AbortSignal): Promise<Merchant | null> {
    this.calls.push(tx);
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      return await this.behaviour(tx, signal, this.calls.length);
    } finally {
      this.running -= 1;
    }
  }
}

/**
 * Answers `{name: description}` at once, without a timer: a runner's claim of such jobs runs
 * them all in one burst of promise callbacks, as no-op jobs do.
 */
export const echoAtOnce: Behaviour = (tx) => Promise.resolve({ name: tx.description });

/** Answers `{name: description}` after `ms`, honouring the signal. */
export const echoAfter =
  (ms: number): Behaviour =>
  async (tx, signal) => {
    await sleep(ms, undefined, { signal });
    return { name: tx.description };
  };

export const tx = (description: string, extra: Partial<Transaction> = {}): Transaction => ({
  date: '2026-04-03',
  description,
  amount: 12.5,
  ...extra,
});

/**
 * Holds every call until released (all, or those with one description), honouring the signal;
 * then answers `{name: description}`. `aborted` collects the abort reasons it saw.
 */
export class Gate {
  readonly aborted: unknown[] = [];
  private openAll = false;
  private readonly opened = new Set<string>();
  private readonly waiting: Array<{ description: string; resolve: () => void }> = [];

  readonly behaviour: Behaviour = async (tx, signal) => {
    if (!this.openAll && !this.opened.has(tx.description)) {
      await new Promise<void>((resolve, reject) => {
        this.waiting.push({ description: tx.description, resolve });
        signal.addEventListener(
          'abort',
          () => {
            this.aborted.push(signal.reason);
            reject(signal.reason as Error);
          },
          { once: true },
        );
      });
    }
    return { name: tx.description };
  };

  release(description?: string): void {
    if (description === undefined) this.openAll = true;
    else this.opened.add(description);
    for (const w of this.waiting.splice(0)) {
      if (description === undefined || w.description === description) w.resolve();
      else this.waiting.push(w);
    }
  }
}
