/**
 * Time to result, one job at a time (no-op heuristic), three ways, each timed by the client:
 * POST then `GET /jobs/{id}?wait=10` (the measure); one POST with `Prefer: wait=10`;
 * and the floor under both on this machine, the same two requests to bench/bare-koa.ts (one
 * INSERT, then one SELECT: no runner, one commit instead of the service's three). Each is
 * timed after TTR_WARMUP untimed round trips of its own.
 *
 * The client is node:http with one keep-alive connection, in a process of its own (child.ts), as
 * a client of the API would be. It was `fetch` in the bench's own process, where the client's own
 * time (undici's streams, the bench process's garbage from the phases before) was in every figure,
 * the service's and the floor's alike: the floor's p99 was 8.8-13.2 ms in five runs of one
 * afternoon with `fetch`, 6.6-8.1 ms in three runs right after with this client.
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { bench, tx } from './harness.js';
import { answer, childInput, inChild, request } from './child.js';

/**
 * Round trips made before the timed ones, and not timed, for each of the three measures: the
 * first requests to a server that has just started open its pool's connections and run code V8
 * has not optimized yet, and the floor's server is always fresh while the service may have been
 * warmed by earlier phases (or not, with `BENCH_ONLY=ttr`), so without them the tail measured
 * start-up as much as steady state, unequally.
 */
export const TTR_WARMUP = Number(process.env.BENCH_TTR_WARMUP ?? 50);

const SELF = fileURLToPath(import.meta.url);

type Measure = 'post-then-wait' | 'prefer-wait' | 'bare';

interface Run {
  measure: Measure;
  base: string;
  n: number;
  warmup: number;
  auth: Record<string, string>;
}

/** POST, then GET ?wait on its id: each round trip's ms. */
export function postThenWait(base: string, n: number): Promise<number[]> {
  return measure('post-then-wait', base, n);
}

/** One POST with `Prefer: wait=10`: 200 with the finished job. */
export function postWaiting(base: string, n: number): Promise<number[]> {
  return measure('prefer-wait', base, n);
}

/** bench/bare-koa.ts at `base`: POST (one INSERT), then GET of the row (one SELECT). */
export function bareRoundTrips(base: string, n: number): Promise<number[]> {
  return measure('bare', base, n);
}

function measure(what: Measure, base: string, n: number): Promise<number[]> {
  const run: Run = { measure: what, base, n, warmup: TTR_WARMUP, auth: bench.auth };
  return inChild<number[]>(SELF, run);
}

/** In the client's process: the round trips, the warm-up first. */
async function roundTrips(run: Run): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const base = new URL(run.base);
  /** The answer's JSON; the request fails if its body is not JSON. */
  const call = async (
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: unknown,
  ) => {
    // GET ?wait answers within 10 s (wait=10); a server that stops answering fails the run.
    const res = await request(agent, base, path, { method, headers, body, timeoutMs: 30_000 });
    try {
      return { status: res.status, json: JSON.parse(res.text) as { id: string; status: string } };
    } catch (err) {
      throw new Error(`${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`, { cause: err });
    }
  };
  const once: Record<Measure, (i: number) => Promise<void>> = {
    'post-then-wait': async (i) => {
      const posted = await call('POST', '/normalize_merchant', run.auth, tx(`OPENAI ${i}`, i));
      if (posted.status !== 202) throw new Error(`time to result: POST ${posted.status}`);
      const done = await call('GET', `/jobs/${posted.json.id}?wait=10`, run.auth);
      if (done.json.status !== 'succeeded') throw new Error(`time to result: ${done.json.status}`);
    },
    'prefer-wait': async (i) => {
      const headers = { ...run.auth, prefer: 'wait=10' };
      const done = await call('POST', '/normalize_merchant', headers, tx(`OPENAI ONE ${i}`, i));
      if (done.status !== 200 || done.json.status !== 'succeeded') {
        throw new Error(`time to result, Prefer: wait: ${done.status} ${done.json.status}`);
      }
    },
    bare: async (i) => {
      const posted = await call('POST', '/', {}, tx(`OPENAI ${i}`, i));
      const got = await call('GET', `/jobs/${posted.json.id}`, {});
      if (got.status !== 200) throw new Error(`bare Koa GET: ${got.status}`);
    },
  };
  const roundTrip = once[run.measure];
  for (let i = 0; i < run.warmup; i++) await roundTrip(run.n + i);
  const times: number[] = [];
  for (let i = 0; i < run.n; i++) {
    const t0 = performance.now();
    await roundTrip(i);
    times.push(performance.now() - t0);
  }
  agent.destroy();
  return times;
}

const input = childInput<Run>(SELF);
if (input) answer(await roundTrips(input));
