/**
 * Long-poll: reading a job or batch again each time the event log says it changed, until it is
 * settled, the time is up, the caller gives up, or the service shuts down. A waiter holds a
 * subscription on the in-process hub, never a database connection.
 */
import type { JobEvents } from './hub.js';

/**
 * Reads with `load` until `settled` holds for what it read, `waitSeconds` pass, `signal` aborts
 * or the hub closes; returns the last read (`undefined`: it does not exist).
 */
export async function waitFor<T>(opts: {
  events: JobEvents;
  topic: string;
  waitSeconds: number;
  load: () => Promise<T | undefined>;
  settled: (value: T) => boolean;
  signal?: AbortSignal;
}): Promise<T | undefined> {
  if (opts.waitSeconds <= 0) return opts.load();
  const deadline = Date.now() + opts.waitSeconds * 1000;
  // Subscribe before the first read, so a finish between the read and the sleep is not missed.
  const sub = opts.events.subscribe(opts.topic);
  try {
    for (;;) {
      const value = await opts.load();
      if (value === undefined || opts.settled(value)) return value;
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted || opts.events.closed) return value;
      await sub.next(left, opts.signal);
      if (opts.signal?.aborted) return value;
    }
  } finally {
    sub.close();
  }
}
