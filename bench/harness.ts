/**
 * What the benchmark's phases share: spawning the service (or another server) and stopping it,
 * submitting and waiting over HTTP, reading figures back from the jobs table, and recording
 * figures (`result`) and the targets (`target`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import { freePort } from '../src/net.js';
import { cpuMs, postgresCpuMs } from './cpu.js';
import { type NodeCommand, benchScript, serviceCommand } from './service-build.js';

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
export const CONCURRENCY = 16;
/**
 * Seconds of the same requests, untimed, before a latency or throughput measure of a server just
 * started (the single-submit rounds, the GETs beside CPU-heavy heuristics): such a server opens
 * its pool's connections and runs unoptimized code for its first requests (V8 compiles each
 * function on its first call, on the event loop; profiled: single GETs of 5-15 ms in the first
 * seconds), which is start-up, not the steady state the targets are about.
 */
export const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
/** Extra node flags for spawned servers, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
/**
 * Another checkout whose service is measured (compiled there first; its own migrations run when
 * it starts): compares a past commit with the same harness. Default: this checkout.
 */
export const SERVICE_DIR = process.env.BENCH_SERVICE_DIR;

/** Wall-clock ms, comparable across this process's measures (and its children's, roughly). */
export const now = () => performance.timeOrigin + performance.now();
export const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
export const say = (line: string) => console.log(`bench: ${line}`);
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every server spawned, so a failed run can kill them. */
export const children: ChildProcess[] = [];
/** What the phases share: the key they send, and the embedded Postgres's postmaster. */
export const bench: {
  auth: Record<string, string>;
  /** Its CPU is measured; unset with BENCH_DATABASE_URL. */
  postmasterPid?: number;
} = { auth: {} };

/**
 * CPU ms per request of the server `pid` and of Postgres over `run` (which returns how many
 * requests it made): steadier than req/s on a shared machine.
 */
export async function cpuPerRequest(
  pid: number,
  run: () => Promise<number>,
): Promise<{ server: number; postgres: number }> {
  const pgCpu = () => (bench.postmasterPid ? postgresCpuMs(bench.postmasterPid) : NaN);
  const [server0, postgres0] = [cpuMs(pid), pgCpu()];
  const n = await run();
  return {
    server: round((cpuMs(pid) - server0) / n, 3),
    postgres: round((pgCpu() - postgres0) / n, 3),
  };
}
/** Every figure measured, by name: printed as a table and a JSON line at the end. */
export const result: Record<string, number | string> = {};

export interface Server {
  base: string;
  pid: number;
  stop(): Promise<void>;
}

/** Spawns `command` with `env` and waits until `ready` answers. */
export async function spawnServer(
  command: NodeCommand,
  env: Record<string, string>,
  ready: (base: string) => Promise<boolean>,
): Promise<Server> {
  const port = await freePort();
  const script = command.args[command.args.length - 1] ?? '';
  const child = spawn(process.execPath, [...NODE_ARGS, ...command.args], {
    env: { ...process.env, ...env, PORT: String(port), LOG_LEVEL: 'warn' },
    cwd: command.cwd,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const logged = relayProblems(script, child.stdout);
  const base = `http://127.0.0.1:${port}`;
  while (!(await ready(base).catch(() => false))) {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}`);
    await sleep(100);
  }
  return {
    base,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      await logged.summarize();
    },
  };
}

/**
 * A spawned server's log (JSON lines on stdout, `warn` and above): each distinct message is shown
 * on stderr the first 3 times, with its error, and `summarize()` counts the rest. A figure that
 * looks wrong (a phase whose jobs never started) then comes with what the server said.
 */
function relayProblems(script: string, stdout: Readable | null) {
  const seen = new Map<string, number>();
  let closed = Promise.resolve();
  if (stdout) {
    const lines = createInterface({ input: stdout });
    closed = once(lines, 'close').then(() => undefined);
    lines.on('line', (line) => {
      let entry: { level?: string; msg?: string; err?: { message?: string }; knex?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      // knex's own warnings come as `knex` with the text in a field of that name.
      const text = entry.knex !== undefined ? `knex: ${entry.knex}` : (entry.msg ?? line);
      // First line only: a message that carries a stack or an id still counts as one.
      const msg = `${entry.level ?? '?'}: ${text.split('\n')[0]?.slice(0, 200) ?? ''}`;
      const n = (seen.get(msg) ?? 0) + 1;
      seen.set(msg, n);
      if (n <= 3) {
        const err = entry.err?.message ? ` (${entry.err.message})` : '';
        process.stderr.write(`bench: ${script} logged ${msg}${err}\n`);
      }
    });
  }
  return {
    /** After the server has exited: waits for the rest of its log, then counts the repeats. */
    async summarize() {
      await closed;
      for (const [msg, n] of seen) {
        if (n > 3) process.stderr.write(`bench: ${script} logged ${msg} ${n} times in all\n`);
      }
      seen.clear();
    },
  };
}

/** bench/bare-koa.ts on `databaseUrl`: the baseline of the submit and time-to-result phases. */
export function spawnBareKoa(databaseUrl: string): Promise<Server> {
  return spawnServer(benchScript('bench/bare-koa.ts'), { DATABASE_URL: databaseUrl }, (base) =>
    fetch(base, { method: 'HEAD' }).then(
      () => true,
      () => false,
    ),
  );
}

/** Services started by startService and not stopped yet. */
const runningServices = new Set<object>();

/**
 * Counts a service starting (startService), refusing one beside another still running unless
 * `alongside`: processes on one database share its queue, so a service still running (another
 * phase's, with another heuristic) claims the new one's jobs whenever it hears of them first,
 * and runs them its own way. The pick-up phase ran beside the no-op service of the phases before
 * it: a job the no-op service took never called the phase's heuristic, and the run waited for
 * that call for ever (12:03 on 2026-11-25). Returns the release, for when the service stops.
 */
export function serviceStarting(alongside = false): () => void {
  if (runningServices.size > 0 && !alongside) {
    throw new Error(
      `startService: ${runningServices.size} service(s) already running; their runners would ` +
        `claim this one's jobs (stop them first, or pass alongside for several processes on purpose)`,
    );
  }
  const service = {};
  runningServices.add(service);
  return () => runningServices.delete(service);
}

/**
 * The service (compiled: service-build.ts) on `databaseUrl`; the result cache off unless `env`
 * says so. One at a time unless `alongside` (serviceStarting).
 */
export async function startService(
  databaseUrl: string,
  env: Record<string, string>,
  opts: { alongside?: boolean } = {},
): Promise<Server> {
  const release = serviceStarting(opts.alongside);
  let server: Server;
  try {
    server = await spawnServer(
      await serviceCommand(SERVICE_DIR),
      {
        DATABASE_URL: databaseUrl,
        RUNNER_CONCURRENCY: String(CONCURRENCY),
        RESULT_CACHE_TTL_MS: '0',
        CLIENT_MAX_PENDING: '1000000',
        RUNNER_POLL_MS: '1000',
        ...env,
      },
      async (base) => (await fetch(`${base}/readyz`)).ok,
    );
  } catch (err) {
    release();
    throw err;
  }
  return {
    ...server,
    async stop() {
      await server.stop();
      release();
    },
  };
}

export async function rssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024);
}

export async function post(base: string, pathname: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${base}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bench.auth },
    body: JSON.stringify(body),
  });
  const parsed: unknown = await res.json();
  if (res.status !== 202 && res.status !== 200) {
    throw new Error(`POST ${pathname}: ${res.status} ${JSON.stringify(parsed)}`);
  }
  return parsed;
}

export const tx = (description: string, i: number) => ({
  date: '2026-04-03',
  description,
  amount: i,
});

/** Submits `n` transactions as batches of 1000, `inFlight` at a time; returns their job ids. */
export async function submitBatches(
  base: string,
  n: number,
  describe: (i: number) => string,
  inFlight = 4,
): Promise<string[]> {
  const ids: string[][] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next * 1000 < n) {
        const b = next++;
        const size = Math.min(1000, n - b * 1000);
        const transactions = Array.from({ length: size }, (_, k) => tx(describe(b * 1000 + k), k));
        const batch = (await post(base, '/normalize_merchant/batch', { transactions })) as {
          job_ids: string[];
        };
        ids[b] = batch.job_ids;
      }
    }),
  );
  return ids.flat();
}

/**
 * Waits until no job is pending or running (every caller has had all its submits answered, so
 * that means all `n` finished). Asks the partial indexes, not a count over the whole table: the
 * harness should not compete with the service for the two cores.
 */
export async function waitFinished(db: Knex, n: number, what: string): Promise<void> {
  let last = performance.now();
  for (;;) {
    const res = await db.raw<{ rows: [{ open: boolean }] }>(
      `SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending')
           OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running') AS open`,
    );
    if (!res.rows[0].open) return;
    if (performance.now() - last > 3000) {
      last = performance.now();
      say(`  ${what}: ${n} jobs, some still open`);
    }
    await sleep(10);
  }
}

/** Jobs pending or running now (through the partial indexes, as waitFinished asks). */
export async function unfinished(db: Knex): Promise<number> {
  const res = await db.raw<{ rows: [{ n: number }] }>(
    `SELECT (SELECT count(*) FROM jobs WHERE status = 'pending')
          + (SELECT count(*) FROM jobs WHERE status = 'running') AS n`,
  );
  return Number(res.rows[0].n);
}

export async function reset(db: Knex) {
  // The event log too: each phase (and each single-submit round) starts from the same tables.
  await db.raw('TRUNCATE jobs, batches, results, flights, job_events');
}

export async function percentiles(db: Knex, expr: string): Promise<{ p50: number; p99: number }> {
  const res = await db.raw<{ rows: [{ p50: number; p99: number }] }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ${expr}) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ${expr}) AS p99
     FROM jobs WHERE started_at IS NOT NULL`,
  );
  return { p50: round(Number(res.rows[0].p50), 2), p99: round(Number(res.rows[0].p99), 2) };
}

export const PICKUP_MS = 'extract(epoch FROM started_at - created_at) * 1000';

export interface Target {
  what: string;
  value: number;
  wanted: string;
  met: boolean;
  detail: string;
}
export const targets: Target[] = [];

/** Records one of the targets for the final table. */
export function target(
  what: string,
  value: number | string | undefined,
  wanted: string,
  met: (v: number) => boolean,
  detail = '',
) {
  const v = Number(value);
  targets.push({ what, value: v, wanted, met: Number.isFinite(v) && met(v), detail });
}

export function ratio(a: number | string | undefined, b: number | string | undefined): number {
  return round(Number(a) / Number(b), 2);
}

export function quantiles(values: number[]): { p50: number; p99: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
  return { p50: round(at(0.5) ?? NaN, 2), p99: round(at(0.99) ?? NaN, 2) };
}

export async function heuristicCalls(base: string): Promise<number> {
  const metrics = await (await fetch(`${base}/metrics`)).text();
  return Number(/^merchant_heuristic_duration_seconds_count (\d+)/m.exec(metrics)?.[1] ?? NaN);
}

export function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
