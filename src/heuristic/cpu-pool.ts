/**
 * A pool of worker threads (piscina) for CPU-bound heuristic work, so it never stalls the HTTP
 * API. The runner's concurrency limit still applies: at most RUNNER_CONCURRENCY attempts are in
 * `match`, hence at most that many tasks here; the pool runs `threads` of them at once. Aborting
 * an attempt's signal terminates the busy thread (piscina replaces it).
 */
import { Piscina } from 'piscina';
import type { CpuTask } from './cpu-worker.js';
import type { Recognition } from './recognise.js';

/** The worker module next to this one: `.ts` from the sources (tsx), `.js` once compiled. */
function workerFile(): string {
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./cpu-worker${extension}`, import.meta.url).href;
}

export class CpuPool {
  private readonly pool: Piscina<CpuTask, Recognition>;

  constructor(threads: number) {
    this.pool = new Piscina({
      filename: workerFile(),
      minThreads: 1,
      maxThreads: threads,
      // Idle threads are kept: spawning one costs tens of milliseconds.
      idleTimeout: 60_000,
    });
  }

  run(task: CpuTask, signal: AbortSignal): Promise<Recognition> {
    return this.pool.run(task, { signal });
  }

  get threads(): number {
    return this.pool.threads.length;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
