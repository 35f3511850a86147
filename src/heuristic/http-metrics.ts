/**
 * Metrics of the HTTP heuristic: call latency by outcome and errors by kind. Made unregistered,
 * so the adapter can exist before the service's registry; `register` adds them to it.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

export const HTTP_OUTCOMES = [
  'ok',
  'timeout',
  'network',
  'http_4xx',
  'http_5xx',
  'malformed',
  /** Stopped by the runner: the job was canceled, its lease lost, or the process stops. */
  'aborted',
] as const;
export type HttpOutcome = (typeof HTTP_OUTCOMES)[number];

const ERROR_KINDS = HTTP_OUTCOMES.filter((o) => o !== 'ok' && o !== 'aborted');

export class HttpHeuristicMetrics {
  readonly seconds = new Histogram({
    name: 'merchant_heuristic_http_request_duration_seconds',
    help: 'Calls to the HTTP heuristic (HEURISTIC=http) by outcome: ok or an error kind.',
    labelNames: ['outcome'],
    buckets: [0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 45, 60],
    registers: [],
  });
  readonly errors = new Counter({
    name: 'merchant_heuristic_http_errors_total',
    help: 'Failed calls to the HTTP heuristic by kind: timeout, network, http_4xx, http_5xx, malformed.',
    labelNames: ['kind'],
    registers: [],
  });

  constructor() {
    // Every kind is exported from the start, so a rate() over it works before the first error.
    for (const kind of ERROR_KINDS) this.errors.inc({ kind }, 0);
  }

  observe(outcome: HttpOutcome, seconds: number): void {
    this.seconds.observe({ outcome }, seconds);
    if (outcome !== 'ok' && outcome !== 'aborted') this.errors.inc({ kind: outcome });
  }

  register(registry: Registry): void {
    registry.registerMetric(this.seconds);
    registry.registerMetric(this.errors);
  }
}
