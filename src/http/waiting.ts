/**
 * Long-poll (`?wait=N`, `Prefer: wait=N`) and conditional requests (`ETag`, `If-None-Match`).
 *
 * A waiting request subscribes to the job's or batch's topic in JobEvents, reads the resource,
 * and sleeps until a FINISHED_CHANNEL notification for it arrives (from any process), the time
 * is up, or the client goes away. While it sleeps it holds no database connection.
 */
import { createHash } from 'node:crypto';
import type { Context } from 'koa';
import type { JobEvents } from '../jobs/events.js';
import { MAX_WAIT_SECONDS } from './schemas.js';

/** A strong ETag over the JSON a client would receive. */
export function etagOf(resource: unknown): string {
  const digest = createHash('sha256').update(JSON.stringify(resource)).digest('base64url');
  return `"${digest.slice(0, 27)}"`;
}

/** The request's If-None-Match tags (weak prefixes dropped); `undefined` without the header. */
export function ifNoneMatch(ctx: Context): string[] | undefined {
  const header = ctx.get('If-None-Match');
  if (!header) return undefined;
  return header.split(',').map((t) => t.trim().replace(/^W\//, ''));
}

export function matchesAny(tags: readonly string[] | undefined, etag: string): boolean {
  return tags !== undefined && (tags.includes('*') || tags.includes(etag));
}

/** `Prefer: wait=N` (RFC 7240), capped at MAX_WAIT_SECONDS; 0 without the preference. */
export function preferredWait(ctx: Context): number {
  const match = /(?:^|[,;\s])wait\s*=\s*"?(\d{1,6})"?/i.exec(ctx.get('Prefer'));
  return match ? Math.min(MAX_WAIT_SECONDS, Number(match[1])) : 0;
}

/**
 * Reads with `load` until `settled` holds for what it read, `waitSeconds` pass, the client
 * disconnects or the service shuts down; returns the last read (`undefined`: it does not exist).
 */
export async function waitFor<T>(
  ctx: Context,
  opts: {
    events: JobEvents;
    topic: string;
    waitSeconds: number;
    load: () => Promise<T | undefined>;
    settled: (value: T) => boolean;
  },
): Promise<T | undefined> {
  if (opts.waitSeconds <= 0) return opts.load();
  const deadline = Date.now() + opts.waitSeconds * 1000;
  const gone = new AbortController();
  const onClose = () => gone.abort();
  ctx.res.once('close', onClose);
  // Subscribe before the first read, so a finish between the read and the sleep is not missed.
  const sub = opts.events.subscribe(opts.topic);
  try {
    for (;;) {
      const value = await opts.load();
      if (value === undefined || opts.settled(value)) return value;
      const left = deadline - Date.now();
      if (left <= 0 || gone.signal.aborted || opts.events.closed) return value;
      await sub.next(left, gone.signal);
      if (gone.signal.aborted) return value;
    }
  } finally {
    sub.close();
    ctx.res.off('close', onClose);
  }
}
