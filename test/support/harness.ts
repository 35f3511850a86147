import type { Knex } from 'knex';
import supertest from 'supertest';
import { type IssuedKey, issueKey } from '../../src/auth/keys.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { Heuristic } from '../../src/heuristic/types.js';
import type { Store } from '../../src/db/store.js';
import type { JobEvents } from '../../src/jobs/hub.js';
import type { Runner } from '../../src/runner/runner.js';
import { createLogger } from '../../src/log.js';
import { type Service, startService } from '../../src/service.js';
import { databaseUrl, freshDatabase } from './db.js';
import { announcingStore } from './process-store.js';
import { tx } from './heuristics.js';
import { TcpProxy } from './tcp-proxy.js';

export interface Harness {
  /** A pool of the test's own on its database, for looking behind the API. */
  db: Knex;
  /**
   * The store on `db`: the statements the runner and the use-cases run, for tests to call. It
   * announces what it finishes as another process would (support/process-store.ts).
   */
  store: Store;
  /** The service, wired by `startService` exactly as `npm start` wires it. */
  service: Service;
  runner: Runner;
  events: JobEvents;
  app: Service['app'];
  /** Requests as client "a" (its key set on every request). */
  http: supertest.Agent;
  /** Requests without a key. */
  anon: ReturnType<typeof supertest>;
  /** Client "a": what `http` sends. */
  key: IssuedKey;
  /** Requests with another key. */
  as(key: string): supertest.Agent;
  /** With `proxy: true`: what stands between the service and Postgres. */
  proxy: TcpProxy | undefined;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  heuristic: Heuristic;
  /** Runner settings, by their names in RunnerOptions. */
  runner?: Partial<{
    concurrency: number;
    leaseMs: number;
    timeoutMs: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    pollMs: number;
  }>;
  /** Start the runner (claiming jobs). @defaultValue true */
  startRunner?: boolean;
  jobMaxAttempts?: number;
  /** Pool size of the service's knex. @defaultValue 10 */
  poolMax?: number;
  /** Pending-job caps. @defaultValue 100000 per client, 1000000 overall */
  quota?: Partial<{ clientMaxPending: number; maxPending: number }>;
  /** Result-cache TTL. @defaultValue 1 h */
  cacheTtlMs?: number;
  /** Any other setting. */
  config?: Partial<Config>;
  /** Put a TcpProxy between the service and Postgres (the test's own pool goes around it). */
  proxy?: boolean;
  /** The runner's randomness (retry jitter). @defaultValue Math.random */
  random?: () => number;
  /**
   * Postgres settings for the service's connections (sent as libpq `options`), e.g.
   * `{ enable_indexscan: 'off' }` so that only an ORDER BY, not an index, orders rows.
   */
  pgSettings?: Record<string, string>;
}

/**
 * The configuration tests run with: the service's defaults, on `url`, with fast settings. The
 * poll is an hour, so anything that happens quickly happened through a wake-up (a local submit
 * or a NOTIFY); shutdown gives running attempts no grace.
 */
export function testConfig(url: string, opts: Omit<HarnessOptions, 'heuristic'> = {}): Config {
  const r = opts.runner ?? {};
  return Object.freeze({
    ...loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', HOST: '127.0.0.1', PORT: '0' }),
    databasePoolMax: opts.poolMax ?? 10,
    runnerConcurrency: r.concurrency ?? 4,
    jobLeaseMs: r.leaseMs ?? 5000,
    jobTimeoutMs: r.timeoutMs ?? 5000,
    jobBackoffBaseMs: r.backoffBaseMs ?? 10,
    jobBackoffMaxMs: r.backoffMaxMs ?? 40,
    runnerPollMs: r.pollMs ?? 3_600_000,
    purgeIntervalMs: 3_600_000,
    shutdownGraceMs: 0,
    maxBatchBodyBytes: 1024 * 1024,
    jobMaxAttempts: opts.jobMaxAttempts ?? 3,
    clientMaxPending: opts.quota?.clientMaxPending ?? 100_000,
    maxPendingJobs: opts.quota?.maxPending ?? 1_000_000,
    resultCacheTtlMs: opts.cacheTtlMs ?? 3_600_000,
    ...opts.config,
  });
}

/**
 * The service (`startService`, the wiring `npm start` uses) on a database of this test's own,
 * without binding a port: requests go through `app.callback()`. Client "a" and its key are made
 * here.
 */
export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const db = await freshDatabase();
  let service: Service;
  let proxy: TcpProxy | undefined;
  try {
    proxy = opts.proxy ? await TcpProxy.start(databaseUrl(db)) : undefined;
    const url = withSettings(
      proxy ? proxy.urlFor(databaseUrl(db)) : databaseUrl(db),
      opts.pgSettings ?? {},
    );
    service = await startService(testConfig(url, opts), {
      log: createLogger('silent'),
      heuristic: opts.heuristic,
      listen: false,
      startRunner: opts.startRunner ?? true,
      random: opts.random,
    });
  } catch (err) {
    await proxy?.close();
    await db.destroy();
    throw err;
  }
  const key = await issueKey(db, 'a');
  const own = announcingStore(db);
  const callback = service.app.callback();
  const as = (apiKey: string) => supertest.agent(callback).set('Authorization', `Bearer ${apiKey}`);
  return {
    db,
    store: own.store,
    service,
    runner: service.runner,
    events: service.events,
    app: service.app,
    http: as(key.key),
    anon: supertest(callback),
    key,
    as,
    proxy,
    async stop() {
      proxy?.stall(false);
      proxy?.refuseNew(false);
      await service.stop();
      await proxy?.close();
      await own.idle();
      await db.destroy();
    },
  };
}

/** `url` with `settings` as the libpq `options` parameter (`-c name=value` each). */
function withSettings(url: string, settings: Record<string, string>): string {
  const entries = Object.entries(settings);
  if (entries.length === 0) return url;
  const parsed = new URL(url);
  parsed.searchParams.set('options', entries.map(([k, v]) => `-c ${k}=${v}`).join(' '));
  return parsed.toString();
}

/** Submits one transaction through the harness's HTTP API; expects 202; returns the job. */
export async function submitJob(h: Harness, description: string): Promise<{ id: string }> {
  const res = await h.http.post('/normalize_merchant').send(tx(description)).expect(202);
  return res.body as { id: string };
}
