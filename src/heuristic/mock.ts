import { setTimeout as sleep } from 'node:timers/promises';
import type { DelayRange } from '../config.js';
import { merchantSignature, recognise } from './recognise.js';
import type { CpuPool } from './cpu-pool.js';
import type { Heuristic } from './types.js';

export interface MockHeuristicOptions {
  /** Each call waits a uniformly drawn time in this range, like the original's latency. */
  delayMs: DelayRange;
  /** Probability (0..1) that a call throws after its delay, for fault injection. */
  failureRate: number;
  /** Source of randomness, injectable for deterministic tests. @defaultValue Math.random */
  random?: () => number;
  /**
   * CPU time each call burns after its delay, like a compute-heavy heuristic; it runs on
   * `cpuPool`'s worker threads, off the event loop. @defaultValue 0
   */
  cpuMs?: number;
  cpuPool?: CpuPool;
}

export class InjectedFailure extends Error {
  constructor() {
    super('mock heuristic: injected failure (HEURISTIC_FAILURE_RATE)');
    this.name = 'InjectedFailure';
  }
}

/**
 * The bundled stand-in for the real heuristic: recognises the merchants in the catalogue and
 * is slow on purpose. Waiting is abortable through the signal, as the seam requires.
 */
export function createMockHeuristic(opts: MockHeuristicOptions): Heuristic {
  const random = opts.random ?? Math.random;
  const { min, max } = opts.delayMs;
  return {
    // mock-3: answers carry the merchant's id and the intermediaries.
    version: 'mock-3',
    // The recogniser's signature: exactly what its answer depends on (see merchantSignature).
    key: (tx) => merchantSignature(tx.description),
    async match(tx, signal) {
      const delay = min + Math.round(random() * (max - min));
      if (delay > 0) await sleep(delay, undefined, { signal });
      signal.throwIfAborted();
      if (opts.failureRate > 0 && random() < opts.failureRate) throw new InjectedFailure();
      const cpuMs = opts.cpuMs ?? 0;
      return cpuMs > 0 && opts.cpuPool
        ? await opts.cpuPool.run({ description: tx.description, cpuMs }, signal)
        : recognise(tx.description);
    },
  };
}
