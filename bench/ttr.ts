/**
 * Time to result, one job at a time (no-op heuristic), three ways, each timed by the client:
 * POST then `GET /jobs/{id}?wait=10` (the measure); one POST with `Prefer: wait=10`;
 * and the floor under both on this machine, the same two requests to bench/bare-koa.ts (one
 * INSERT, then one SELECT: no runner, one commit instead of the service's three). Each is
 * timed after TTR_WARMUP untimed round trips of its own.
 */
import { bench, post, tx } from './harness.js';

/**
 * Round trips made before the timed ones, and not timed, for each of the three measures: the
 * first requests to a server that has just started open its pool's connections and run code V8
 * has not optimized yet, and the floor's server is always fresh while the service may have been
 * warmed by earlier phases (or not, with `BENCH_ONLY=ttr`), so without them the tail measured
 * start-up as much as steady state, unequally.
 */
export const TTR_WARMUP = Number(process.env.BENCH_TTR_WARMUP ?? 50);

async function timed(n: number, once: (i: number) => Promise<void>): Promise<number[]> {
  for (let i = 0; i < TTR_WARMUP; i++) await once(n + i);
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
