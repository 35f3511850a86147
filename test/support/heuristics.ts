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
  readonly version = 'test-1';
  readonly calls: Transaction[] = [];
  running = 0;
  maxRunning = 0;

  constructor(private readonly behaviour: Behaviour) {}

  key(tx: Transaction): string {
    return tx.description;
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
