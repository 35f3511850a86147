/**
 * Polling clients for the bench's GET-latency figures: `connections` keep-alive connections
 * (node:http) GET one URL at `rate` requests per second in all, evenly spaced (connection k sends
 * at k / rate, then every connections / rate seconds), for `seconds`; each request is timed from
 * its send to the end of its response, in a process of its own.
 *
 * Why not autocannon's `overallRate` (which the phase still reports beside): it is not a steady
 * rate. Each connection sends back to back until it has made its share of the second's requests,
 * then waits for the next second (`reqsMadeThisSecond` in its httpClient.js), so the server gets
 * a burst of four connections flat out at the start of every second and nothing after. And with a
 * rate it records each latency with HdrHistogram's coordinated-omission correction at an expected
 * interval of `Math.ceil(1 / rate)` = 1 ms, so a response of N ms is counted N times (N, N - 1, ...
 * 1): its tail weighs slow responses many times over. Against the same server in adjacent windows
 * (`BENCH_ONLY=cpu`, three runs) its p99 was 12-18 ms with nothing running, where these clients
 * had 5.6-6.8 ms. A polling client of the API sends its GETs apart, from a process of its own,
 * which this is.
 *
 * `pacedGets` runs them in a process of their own (child.ts).
 */
import http from 'node:http';
import { answer, childInput, inChild } from './child.js';

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
  return inChild<number[]>(import.meta.filename, opts);
}

async function run(opts: PacedGets): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.connections });
  const url = new URL(opts.url);
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      http
        .get(
          {
            host: url.hostname,
            port: url.port,
            path: url.pathname + url.search,
            agent,
            headers: opts.headers,
          },
          (res) => {
            if (res.statusCode !== 200) reject(new Error(`GET ${opts.url}: ${res.statusCode}`));
            res.resume();
            res.on('end', () => resolve(performance.now() - t0));
          },
        )
        .on('error', reject);
    });
  const latencies: number[] = [];
  const start = performance.now();
  const every = (1000 * opts.connections) / opts.rate;
  await Promise.all(
    Array.from({ length: opts.connections }, async (_, k) => {
      let next = start + (k * 1000) / opts.rate;
      while (next - start < opts.seconds * 1000) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        latencies.push(await get());
        next += every;
      }
    }),
  );
  agent.destroy();
  return latencies;
}

const input = childInput<PacedGets>(import.meta.filename);
if (input) answer(await run(input));
