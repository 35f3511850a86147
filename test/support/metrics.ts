import type { Metrics } from '../../src/metrics.js';

/** Heuristic attempts counted so far by `metrics`, by outcome (only outcomes seen). */
export async function attemptOutcomes(metrics: Metrics): Promise<Record<string, number>> {
  const { values } = await metrics.attempts.get();
  return Object.fromEntries(
    values.filter((v) => v.value > 0).map((v) => [String(v.labels.outcome), v.value]),
  );
}
