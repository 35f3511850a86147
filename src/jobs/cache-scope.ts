/**
 * Who shares a result-cache entry (RESULT_CACHE_SCOPE). With `global`, every client's jobs
 * share answers (and single-flight): fewer heuristic calls, but a client can tell from an
 * instant `succeeded` with `attempts: 0` that someone looked the same merchant up within the
 * TTL. With `client`, each client's entries are its own: the key carries the client's id, so
 * no job ever reads, or waits on, another client's work.
 */
import { type Heuristic, type Transaction, cacheKeyOf } from '../heuristic/types.js';

export type CacheScope = 'client' | 'global';

/** The cache key of `tx` submitted by `clientId`, or null when it is not cacheable. */
export function scopedCacheKey(
  scope: CacheScope,
  heuristic: Pick<Heuristic, 'version' | 'key'>,
  tx: Transaction,
  clientId: string,
): string | null {
  const key = cacheKeyOf(heuristic, tx);
  if (key === null || scope === 'global') return key;
  return `client:${clientId}:${key}`;
}
