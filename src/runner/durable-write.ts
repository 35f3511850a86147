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

/** The claim was lost (or the process stopped) before the write landed: nothing was written. */
export class WriteAbandoned extends Error {
  constructor(readonly tries: number) {
    super(
      `gave up writing the attempt's outcome after ${tries} tries: the claim is no longer held`,
    );
    this.name = 'WriteAbandoned';
  }
}

export interface DurableWriteOptions {
  /** Aborted when the attempt no longer holds its claim: stop retrying. */
  held: AbortSignal;
  /** Called before each wait, with the error, the tries so far and the coming delay. */
  onRetry?: (err: unknown, tries: number, delayMs: number) => void;
  /** First delay; doubles per try. @defaultValue 100 */
  baseMs?: number;
  /** Cap on the delay. @defaultValue 2000 */
  maxMs?: number;
}

/** Runs `write` until it succeeds, retrying transient errors while `held` is not aborted. */
export async function untilWritten<T>(
  write: () => Promise<T>,
  opts: DurableWriteOptions,
): Promise<T> {
  const base = opts.baseMs ?? 100;
  const max = opts.maxMs ?? 2000;
  for (let tries = 1; ; tries++) {
    if (opts.held.aborted) throw new WriteAbandoned(tries - 1);
    try {
      return await write();
    } catch (err) {
      if (!isTransientDbError(err)) throw err;
      if (opts.held.aborted) throw new WriteAbandoned(tries);
      const delay = Math.min(max, base * 2 ** (tries - 1));
      opts.onRetry?.(err, tries, delay);
      await sleep(delay, undefined, { signal: opts.held }).catch(() => undefined);
    }
  }
}
