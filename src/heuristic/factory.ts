/**
 * Picks the heuristic the service runs: one given in-process, or by `HEURISTIC` the bundled
 * mock (with its worker threads for HEURISTIC_CPU_MS) or the HTTP adapter for the original
 * synchronous service. The service calls this once and needs nothing else from here.
 */
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { CpuPool, canLowerPriority } from './cpu-pool.js';
import { HttpHeuristic } from './http.js';
import { createMockHeuristic } from './mock.js';
import type { Heuristic } from './types.js';

export interface HeuristicRuntime {
  readonly heuristic: Heuristic;
  /** Adds the heuristic's own metrics (if any) to the service's registry. */
  registerMetrics(registry: Registry): void;
  /** Releases what it holds (threads, connections); after the runner has stopped. */
  close(): Promise<void>;
}

export function createHeuristic(
  config: Readonly<Config>,
  log: Logger,
  /** An in-process heuristic: used as it is, and the HEURISTIC_* settings are ignored. */
  custom?: Heuristic,
): HeuristicRuntime {
  if (custom) return { heuristic: custom, registerMetrics: () => undefined, close: async () => {} };

  if (config.heuristic === 'http') {
    const http = new HttpHeuristic({
      url: config.heuristicUrl ?? '',
      version: config.heuristicVersion ?? '',
      // One keep-alive connection per runner slot: no attempt waits for a socket.
      connections: config.runnerConcurrency,
      timeoutMs: Math.min(config.heuristicTimeoutMs, config.jobTimeoutMs),
      cacheKey: config.heuristicCacheKey,
    });
    const url = new URL(config.heuristicUrl ?? '');
    log.info(
      {
        heuristic: 'http',
        url: `${url.origin}${url.pathname}`,
        version: http.version,
        connections: config.runnerConcurrency,
      },
      'heuristic: the synchronous service at HEURISTIC_URL',
    );
    return {
      heuristic: http,
      registerMetrics: (registry) => http.metrics.register(registry),
      close: () => http.close(),
    };
  }

  // CPU-bound work goes to worker threads, never more at once than the runner's slots.
  const cpuPool =
    config.heuristicCpuMs > 0
      ? new CpuPool(Math.min(config.heuristicThreads, config.runnerConcurrency), {
          nice: config.heuristicThreadsNice,
        })
      : undefined;
  if (cpuPool && cpuPool.nice > 0) {
    void canLowerPriority().then((can) => {
      if (!can)
        log.warn(
          { heuristicThreadsNice: cpuPool.nice },
          'HEURISTIC_THREADS_NICE has no effect: @napi-rs/nice (an optional dependency of piscina) is not installed',
        );
    });
  }
  const heuristic = createMockHeuristic({
    delayMs: config.heuristicDelayMs,
    failureRate: config.heuristicFailureRate,
    cpuMs: config.heuristicCpuMs,
    cpuPool,
  });
  return {
    heuristic,
    registerMetrics: () => undefined,
    close: async () => {
      await cpuPool?.close();
    },
  };
}
