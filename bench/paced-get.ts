/**
 * Polling clients for the bench's GET-latency figures: `connections` keep-alive connections
 * (node:http) GET one URL at `rate` requests per second in all, evenly spaced (connection k sends
 * at k / rate, then every connections / rate seconds), for `seconds`, after a few untimed GETs on
 * each; each request is timed from the moment it was due to the end of its response.
 *
 * Why not autocannon's `overallRate` (which the phase still reports beside): it is not a steady
 * rate. Each connection sends back to back until it has made its share of the second's requests,
 * then waits for the next second (`reqsMadeThisSecond` in its httpClient.js), so the server gets
 * a burst of four connections flat out at the start of every second and nothing after. And with a
 * rate it records each latency with HdrHistogram's coordinated-omission correction at an expected
 * interval of `Math.ceil(1 / rate)` = 1 ms, so a response of N ms is counted N times (N, N - 1, ...
 * 1): its tail weighs slow responses many times over. Against the same server in adjacent windows
 * (`BENCH_ONLY=cpu`, three runs) its p99 was 12-18 ms with nothing running, where these clients
 * (then timed from each send, one agent for the four) had 5.6-6.8 ms. A polling client of the
 * API sends its GETs apart, from a process of its own, which this is.
 *
 * `pacedGets` runs them in a process of their own (child.ts).
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { answer, childInput, inChild, request } from './child.js';

const SELF = fileURLToPath(import.meta.url);

export interface PacedGets {
  url: string;
  headers: Record<string, string>;
  /** Requests per second over all connections. */
  rate: number;
  connections: number;
  seconds: number;
}

/** Runs the clients in a child process; resolves with every request's latency in ms. */
export function pacedGets(opts: PacedGets): Promise<number[]> {
  return inChild<number[]>(SELF, opts);
}

/** Untimed GETs on each connection first: the connection is opened and the client's code warm. */
const WARMUP_GETS = 20;

/**
 * One connection each (an agent of one socket: a shared agent reuses the socket freed last and
 * opens others only when responses are slow, their connect time landing in the slow samples).
 * Each request is timed from the moment it was due, not from when it could be sent: a response
 * slower than the interval delays the connection's next requests, and those count that wait
 * (timed from their own send, a stall of 200 ms would count as one slow request, not ten).
 */
async function run(opts: PacedGets): Promise<number[]> {
  const url = new URL(opts.url);
  const connections = Array.from(
    { length: opts.connections },
    () => new http.Agent({ keepAlive: true, maxSockets: 1 }),
  );
  const path = url.pathname + url.search;
  const get = async (agent: http.Agent) => {
    const res = await request(agent, url, path, { headers: opts.headers, timeoutMs: 10_000 });
    if (res.status !== 200) throw new Error(`GET ${opts.url}: ${res.status}`);
  };
  for (const agent of connections) for (let i = 0; i < WARMUP_GETS; i++) await get(agent);
  const latencies: number[] = [];
  const start = performance.now();
  const every = (1000 * opts.connections) / opts.rate;
  await Promise.all(
    connections.map(async (agent, k) => {
      let due = start + (k * 1000) / opts.rate;
      while (due - start < opts.seconds * 1000) {
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        await get(agent);
        latencies.push(performance.now() - due);
        due += every;
      }
    }),
  );
  for (const agent of connections) agent.destroy();
  return latencies;
}

const input = childInput<PacedGets>(SELF);
if (input) answer(await run(input));
