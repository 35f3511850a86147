/**
 * Recording an attempt's outcome through a database outage. The heuristic's answer took up to
 * 30 s to compute; losing it to a few seconds without Postgres would mean computing it again
 * (and, as leases expire, counting attempts that did not fail). So the write is retried, with
 * backoff, for as long as the attempt still holds its claim: until it lands, until the claim
 * is known lost (the heartbeat found the lease taken, the job was canceled), or until shutdown
 * gives up on it. Only transient errors (db/transient.ts) are retried: any other error means
 * this write cannot succeed, and is the caller's to handle.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isTransientDbError } from '../db/transient.js';
import { coerceError } from '../errors.js';

/** The claim was lost (or the process stopped) before the write landed: nothing was written. */
export class WriteAbandoned extends Error {
  constructor(readonly tries: number) {
    super(
      `gave up writing the attempt's outcome after ${tries} tries: the claim is no longer held`,
    );
    this.name = 'WriteAbandoned';
  }
}

/**
 * Whether an attempt still holds its claim. Aborted (for good) once it does not; `signal`, made
 * on first use, aborts then too. Most attempts never need the signal (their write lands at the
 * first try), so it costs them no AbortController.
 */
export class Hold {
  #aborted = false;
  #controller: AbortController | undefined;

  get aborted(): boolean {
    return this.#aborted;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort();
    }
    return this.#controller.signal;
  }

  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#controller?.abort();
  }
}

export interface DurableWriteOptions {
  /** Aborted when the attempt no longer holds its claim: stop retrying. */
  held: Hold;
  /** Called before each wait, with the error, the tries so far and the coming delay. */
  onRetry?: (err: unknown, tries: number, delayMs: number) => void;
  /** First delay; doubles per try. @defaultValue 100 */
  baseMs?: number;
  /** Cap on the delay. @defaultValue 2000 */
  maxMs?: number;
}

/** Runs `write` until it succeeds, retrying transient errors while `held` is not aborted. */
export function untilWritten<T>(write: () => Promise<T>, opts: DurableWriteOptions): Promise<T> {
  if (opts.held.aborted) return Promise.reject(new WriteAbandoned(0));
  // The first try outside the retry loop: the write of almost every attempt lands at once, and
  // this path allocates one promise for it where the loop's async frame took several.
  return attempt(write).catch((err: unknown) => retry(err, write, opts));
}

function attempt<T>(write: () => Promise<T>): Promise<T> {
  try {
    return write();
  } catch (err) {
    return Promise.reject(coerceError(err));
  }
}

/** The tries after a first one that failed with `first`. */
async function retry<T>(
  first: unknown,
  write: () => Promise<T>,
  opts: DurableWriteOptions,
): Promise<T> {
  const base = opts.baseMs ?? 100;
  const max = opts.maxMs ?? 2000;
  let err = first;
  for (let tries = 1; ; tries++) {
    if (!isTransientDbError(err)) throw err;
    if (opts.held.aborted) throw new WriteAbandoned(tries);
    const delay = Math.min(max, base * 2 ** (tries - 1));
    opts.onRetry?.(err, tries, delay);
    await sleep(delay, undefined, { signal: opts.held.signal }).catch(() => undefined);
    if (opts.held.aborted) throw new WriteAbandoned(tries);
    try {
      return await write();
    } catch (next) {
      err = next;
    }
  }
}
