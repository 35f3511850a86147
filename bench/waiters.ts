/**
 * The long-poll phase's waiters, in a process of their own (child.ts): `GET /jobs/{id}?wait=60`
 * for every job at once, each on a connection of its own, timed by this process's clock. They
 * ran as `fetch` calls in the bench's own process, where the garbage and the connections left by
 * the phases before (submit, drain, time to result) were in every answer's time: the lag's p99
 * was 20-30 ms after those phases and 10-15 ms with the phase run alone, the same server code.
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { answer, childInput, inChild, request } from './child.js';

const SELF = fileURLToPath(import.meta.url);

interface Run {
  base: string;
  ids: readonly string[];
  auth: Record<string, string>;
}

/** One waiter: when it asked and was answered, and when its job finished (ms since the epoch). */
export interface Waited {
  askedAt: number;
  answeredAt: number;
  finishedAt: number;
}

/** Waits on every job of `ids` at `base` at once, from a child process. */
export function waitOnJobs(
  base: string,
  ids: readonly string[],
  auth: Record<string, string>,
): Promise<Waited[]> {
  return inChild<Waited[]>(SELF, { base, ids, auth } satisfies Run);
}

/** In the child: the waiters, all at once. */
async function waitAll(run: Run): Promise<Waited[]> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const base = new URL(run.base);
  try {
    return await Promise.all(
      run.ids.map(async (id) => {
        const askedAt = Date.now();
        // ?wait=60 answers within a minute; a server that stops answering fails the phase.
        const res = await request(agent, base, `/jobs/${id}?wait=60`, {
          headers: run.auth,
          timeoutMs: 90_000,
        });
        const answeredAt = Date.now();
        if (res.status !== 200) throw new Error(`GET /jobs/${id}: ${res.status} ${res.text}`);
        const job = JSON.parse(res.text) as { finished_at: string | null };
        return { askedAt, answeredAt, finishedAt: Date.parse(job.finished_at ?? '') };
      }),
    );
  } finally {
    agent.destroy();
  }
}

const input = childInput<Run>(SELF);
if (input) answer(await waitAll(input));
