/**
 * Time to result, one job at a time (no-op heuristic), three ways, each timed by the client:
 * POST then `GET /jobs/{id}?wait=10` (the measure); one POST with `Prefer: wait=10`;
 * and the floor under both on this machine, the same two requests to bench/bare-koa.ts (one
 * INSERT, then one SELECT: no runner, one commit instead of the service's three).
 */
import { bench, post, tx } from './harness.js';

async function timed(n: number, once: (i: number) => Promise<void>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await once(i);
    times.push(performance.now() - t0);
  }
  return times;
}

async function json(res: Response): Promise<{ id: string; status: string }> {
  return (await res.json()) as { id: string; status: string };
}

/** POST, then GET ?wait on its id. */
export function postThenWait(base: string, n: number): Promise<number[]> {
  return timed(n, async (i) => {
    const { id } = (await post(base, '/normalize_merchant', tx(`OPENAI ${i}`, i))) as {
      id: string;
    };
    const done = await json(await fetch(`${base}/jobs/${id}?wait=10`, { headers: bench.auth }));
    if (done.status !== 'succeeded') throw new Error(`time to result: ${done.status}`);
  });
}

/** One POST with `Prefer: wait=10`: 200 with the finished job. */
export function postWaiting(base: string, n: number): Promise<number[]> {
  return timed(n, async (i) => {
    const res = await fetch(`${base}/normalize_merchant`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=10', ...bench.auth },
      body: JSON.stringify(tx(`OPENAI ONE ${i}`, i)),
    });
    const done = await json(res);
    if (res.status !== 200 || done.status !== 'succeeded') {
      throw new Error(`time to result, Prefer: wait: ${res.status} ${done.status}`);
    }
  });
}

/** bench/bare-koa.ts at `base`: POST (one INSERT), then GET of the row (one SELECT). */
export function bareRoundTrips(base: string, n: number): Promise<number[]> {
  return timed(n, async (i) => {
    const res = await fetch(`${base}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(tx(`OPENAI ${i}`, i)),
    });
    const { id } = await json(res);
    const got = await fetch(`${base}/jobs/${id}`);
    if (got.status !== 200) throw new Error(`bare Koa GET: ${got.status}`);
    await got.json();
  });
}
