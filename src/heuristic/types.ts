/** A card transaction as clients submit it (the original synchronous API's body). */
export interface Transaction {
  /** Booking date, YYYY-MM-DD. */
  date: string;
  /** The descriptor printed on the statement, 1..500 characters. */
  description: string;
  /** Signed amount; negative for refunds. */
  amount: number;
  /** ISO 4217 code, e.g. "USD". */
  currency?: string;
  /** Merchant category code, four digits. */
  mcc?: string;
  /** The client's own identifier, echoed back untouched. */
  reference?: string;
}

export interface Merchant {
  name: string;
}

/**
 * The seam the real normalization heuristic plugs into.
 *
 * `match` may take up to tens of seconds. It must stop promptly (rejecting) when `signal`
 * aborts: the runner aborts on timeout, on cancellation and on shutdown. Throwing
 * `NonRetryableError` (src/jobs/errors.ts) fails the job without further attempts; any other
 * error is retried with backoff.
 */
export interface Heuristic {
  /** Identifies the algorithm and its data; a new version must not reuse cached answers. */
  readonly version: string;
  /** What the answer depends on, for the result cache; `null` means "do not cache". */
  key(tx: Transaction): string | null;
  /** The merchant, or `null` when none is recognised (a successful answer, not a failure). */
  match(tx: Transaction, signal: AbortSignal): Promise<Merchant | null>;
}

/** The result-cache key of `tx`: "version:key", or null when the heuristic says not to cache. */
export function cacheKeyOf(heuristic: Pick<Heuristic, 'version' | 'key'>, tx: Transaction) {
  const key = heuristic.key(tx);
  return key === null ? null : `${heuristic.version}:${key}`;
}
