/**
 * A pool of worker threads (piscina) for CPU-bound heuristic work, so it never stalls the HTTP
 * API. The runner's concurrency limit still applies: at most RUNNER_CONCURRENCY attempts are in
 * `match`, hence at most that many tasks here; the pool runs `threads` of them at once. Aborting
 * an attempt's signal terminates the busy thread (piscina replaces it).
 *
 * The threads run at a lower priority than the event loop (`nice`, 10 by default; piscina's
 * `niceIncrement`, through its optional `@napi-rs/nice`; Linux only, where a thread's nice value
 * is its own): when every core is busy, a request waiting to be served runs before more
 * heuristic work, and on an idle machine the threads get the cores all the same
 * (docs/performance-log.md, "The CPU threads' priority").
 */
import { Piscina } from 'piscina';
import { DEFAULT_THREADS_NICE } from '../config.js';
import type { CpuTask } from './cpu-worker.js';
import type { Recognition } from './recognise.js';

/** The worker module next to this one: `.ts` from the sources (tsx), `.js` once compiled. */
function workerFile(): string {
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./cpu-worker${extension}`, import.meta.url).href;
}

/**
 * Whether this machine's threads can lower their priority as the pool asks: piscina does it with
 * its optional dependency `@napi-rs/nice` (a binary per platform), and without it goes on at the
 * event loop's priority, saying nothing.
 */
export async function canLowerPriority(module = '@napi-rs/nice'): Promise<boolean> {
  try {
    const binding = (await import(module)) as { nice?: unknown };
    return typeof binding.nice === 'function';
  } catch {
    return false;
  }
}

export class CpuPool {
  private readonly pool: Piscina<CpuTask, Recognition>;
  /**
   * The nice increment the threads ask for: 0 off Linux, where nice(2) would lower the whole
   * process, event loop included.
   */
  readonly nice: number;

  constructor(threads: number, opts: { nice?: number } = {}) {
    this.nice = process.platform === 'linux' ? (opts.nice ?? DEFAULT_THREADS_NICE) : 0;
    this.pool = new Piscina({
      filename: workerFile(),
      minThreads: 1,
      maxThreads: threads,
      // Idle threads are kept: spawning one costs tens of milliseconds.
      idleTimeout: 60_000,
      niceIncrement: this.nice,
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
