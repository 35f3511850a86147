/**
 * How many jobs a claim fetches beyond the free slots, from the mean attempt time so far.
 */

/** Attempts shorter than this on average make claims fetch ahead. */
const PREFETCH_BELOW_MS = 50;
/** Fetch ahead about this much work per slot... */
const PREFETCH_WORK_MS = 20;
/** ...but at most this many jobs per slot. */
const PREFETCH_MAX_PER_SLOT = 16;

/**
 * Jobs claimed beyond the free slots, to wait in the runner for one: a claim costs more than a
 * job that takes a few milliseconds, so for such jobs one claim fetches about PREFETCH_WORK_MS of
 * work per slot ahead (at least one job, at most PREFETCH_MAX_PER_SLOT), so a claim's round trip
 * is shared by many jobs and the slots do not wait for it. A job waits there at most about that
 * long. Never for slow heuristics: a claimed job waiting in one process could have run elsewhere.
 */
export function prefetchJobs(meanMs: number, concurrency: number): number {
  if (!(meanMs < PREFETCH_BELOW_MS)) return 0;
  const perSlot = Math.floor(PREFETCH_WORK_MS / Math.max(meanMs, 0.01));
  return concurrency * Math.min(PREFETCH_MAX_PER_SLOT, Math.max(1, perSlot));
}
