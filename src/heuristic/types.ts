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
  /** Display name, e.g. "Blue Bottle Coffee". */
  name: string;
  /**
   * A stable identifier for joining, a lower-case slug ("blue-bottle-coffee"). Optional for
   * in-process heuristics; the bundled mock and the HTTP adapter always give one.
   */
  id?: string;
}

/**
 * A payment processor or platform that stood between the cardholder and the merchant:
 * `PAYPAL *SUSHI GO` was paid to Sushi Go through PayPal.
 */
export interface Intermediary {
  /** Stable slug, e.g. "paypal". */
  id: string;
  /** Display name, e.g. "PayPal". */
  name: string;
  /**
   * `processor`: moves the money (Square, Toast, PayPal, Venmo, Google Pay);
   * `platform`: sells or delivers on the merchant's behalf (DoorDash, Grubhub).
   */
  kind: IntermediaryKind;
}

export const INTERMEDIARY_KINDS = ['processor', 'platform'] as const;
export type IntermediaryKind = (typeof INTERMEDIARY_KINDS)[number];

/** A heuristic's full answer: what a job's `result` holds. */
export interface MatchResult {
  /** `null` when no merchant is recognised (a successful answer, not a failure). */
  merchant: Merchant | null;
  /**
   * Processors and platforms named in the descriptor, outermost first; `[]` when there were
   * none. Left out by heuristics that do not report them (an unknown, not an empty list).
   */
  intermediaries?: Intermediary[];
}

/**
 * What `match` may answer: a full `MatchResult`, or (the original shape, still accepted) just
 * the merchant or `null`.
 */
export type MatchAnswer = MatchResult | Merchant | null;

/**
 * The seam the real normalization heuristic plugs into.
 *
 * `match` may take up to tens of seconds. It must stop promptly (rejecting) when `signal`
 * aborts: the runner aborts on timeout, on cancellation and on shutdown. Throwing
 * `NonRetryableError` (src/heuristic/errors.ts) fails the job without further attempts; any other
 * error is retried with backoff.
 */
export interface Heuristic {
  /** Identifies the algorithm and its data; a new version must not reuse cached answers. */
  readonly version: string;
  /** What the answer depends on, for the result cache; `null` means "do not cache". */
  key(tx: Transaction): string | null;
  /** The answer; a merchant of `null` when none is recognised (a success, not a failure). */
  match(tx: Transaction, signal: AbortSignal): Promise<MatchAnswer>;
}

/** The `MatchResult` of any answer `match` may give: a bare merchant or null is wrapped. */
export function toMatchResult(answer: MatchAnswer): MatchResult {
  if (answer === null) return { merchant: null };
  return 'merchant' in answer ? answer : { merchant: answer };
}

/** The result-cache key of `tx`: "version:key", or null when the heuristic says not to cache. */
export function cacheKeyOf(heuristic: Pick<Heuristic, 'version' | 'key'>, tx: Transaction) {
  const key = heuristic.key(tx);
  return key === null ? null : `${heuristic.version}:${key}`;
}
