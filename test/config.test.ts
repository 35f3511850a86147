import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config.js';
import { loadStandinConfig } from '../src/standin/config.js';

describe('loadConfig(env)', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).to.include({
      port: 9898,
      // The embedded database is for one machine: so is the API, unless HOST says otherwise.
      host: '127.0.0.1',
      databaseUrl: undefined,
      dataDir: '.data',
      runnerConcurrency: 16,
      heuristicFailureRate: 0,
      heuristicThreadsNice: 10,
      jobLeaseMs: 30_000,
      jobTimeoutMs: 60_000,
      jobMaxAttempts: 3,
      jobRetentionMs: 7 * 24 * 3_600_000,
      shutdownGraceMs: 20_000,
      clientMaxPending: 100_000,
      maxPendingJobs: 1_000_000,
      resultCacheTtlMs: 7 * 24 * 3_600_000,
      logLevel: 'info',
    });
    expect(config.heuristicDelayMs).to.deep.equal({ min: 1000, max: 30_000 });
    expect(Object.isFrozen(config)).to.equal(true);
  });

  it('binds every interface by default with DATABASE_URL, and reads HOST either way', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://db/x' }).host).to.equal('0.0.0.0');
    expect(loadConfig({ HOST: '0.0.0.0' }).host).to.equal('0.0.0.0');
    expect(loadConfig({ HOST: '::1', DATABASE_URL: 'postgres://db/x' }).host).to.equal('::1');
  });

  it('reads CORS_ORIGINS as a comma-separated list of origins, empty by default', () => {
    expect(loadConfig({}).corsOrigins).to.deep.equal([]);
    expect(
      loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://localhost:3000' }).corsOrigins,
    ).to.deep.equal(['https://app.example.com', 'http://localhost:3000']);
    expect(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins).to.deep.equal(['*']);
  });

  it('reads HEURISTIC_DELAY_MS as "N" or "MIN-MAX"', () => {
    expect(loadConfig({ HEURISTIC_DELAY_MS: '250' }).heuristicDelayMs).to.deep.equal({
      min: 250,
      max: 250,
    });
    expect(loadConfig({ HEURISTIC_DELAY_MS: '10-200' }).heuristicDelayMs).to.deep.equal({
      min: 10,
      max: 200,
    });
  });

  it('reads every variable it documents', () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: 'postgres://u@db:5432/x',
      DATA_DIR: '/var/lib/mn',
      RUNNER_CONCURRENCY: '2',
      HEURISTIC_FAILURE_RATE: '0.25',
      HEURISTIC_THREADS_NICE: '0',
      JOB_LEASE_MS: '1000',
      JOB_MAX_ATTEMPTS: '5',
      JOB_RETENTION_DAYS: '1.5',
      CLIENT_MAX_PENDING: '50',
      MAX_PENDING_JOBS: '500',
      LOG_LEVEL: 'DEBUG',
    });
    expect(config).to.include({
      port: 0,
      host: '127.0.0.1',
      databaseUrl: 'postgres://u@db:5432/x',
      dataDir: '/var/lib/mn',
      runnerConcurrency: 2,
      heuristicFailureRate: 0.25,
      heuristicThreadsNice: 0,
      jobLeaseMs: 1000,
      jobMaxAttempts: 5,
      jobRetentionMs: 36 * 3_600_000,
      clientMaxPending: 50,
      maxPendingJobs: 500,
      logLevel: 'debug',
    });
  });

  const bad: Array<[string, string]> = [
    ['PORT', '70000'],
    ['PORT', '80abc'],
    ['RUNNER_CONCURRENCY', '0'],
    ['RUNNER_CONCURRENCY', '1.5'],
    ['HEURISTIC_DELAY_MS', '30s'],
    ['HEURISTIC_DELAY_MS', '500-100'],
    ['HEURISTIC_FAILURE_RATE', '1.5'],
    ['HEURISTIC_FAILURE_RATE', 'often'],
    // A nice increment: 0 (as the event loop) to 19 (the lowest priority); never above it.
    ['HEURISTIC_THREADS_NICE', '20'],
    ['HEURISTIC_THREADS_NICE', '-5'],
    ['JOB_MAX_ATTEMPTS', '0'],
    ['JOB_RETENTION_DAYS', '-1'],
    // Idempotency keys live as long as their jobs: at least a day.
    ['JOB_RETENTION_DAYS', '0.5'],
    ['DATABASE_URL', 'mysql://localhost/x'],
    ['LOG_LEVEL', 'loud'],
    ['DATABASE_STATEMENT_TIMEOUT_MS', '50'],
    ['DATABASE_ACQUIRE_TIMEOUT_MS', 'soon'],
    ['DATABASE_STARTUP_WAIT_MS', '-1'],
    ['METRICS_TOKEN', 'short'],
    ['METRICS_TOKEN', 'has a space in it somewhere'],
    ['METRICS_QUEUE_REFRESH_MS', '10'],
    ['AUTH_FAILURES_PER_MINUTE', '0'],
    ['RESULT_CACHE_SCOPE', 'tenant'],
    ['CORS_ORIGINS', 'app.example.com'],
    ['CORS_ORIGINS', 'https://app.example.com/'],
    ['CORS_ORIGINS', 'https://ok.example.com,ftp//nope'],
  ];
  for (const [name, value] of bad) {
    it(`rejects ${name}=${JSON.stringify(value)} with a message naming it`, () => {
      expect(() => loadConfig({ [name]: value }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.contains(name);
    });
  }

  it('reports every bad variable at once', () => {
    try {
      loadConfig({ PORT: 'x', JOB_LEASE_MS: 'y' });
      expect.fail('loadConfig accepted bad values');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).problems).to.have.length(2);
    }
  });

  it('applies the documented defaults of the reliability settings, and reads them', () => {
    expect(loadConfig({})).to.include({
      databaseStatementTimeoutMs: 5000,
      databaseAcquireTimeoutMs: 3000,
      databaseStartupWaitMs: 60_000,
      metricsToken: undefined,
      metricsQueueRefreshMs: 5000,
      authFailuresPerMinute: 60,
      resultCacheScope: 'client',
    });
    expect(
      loadConfig({
        DATABASE_STATEMENT_TIMEOUT_MS: '1500',
        DATABASE_ACQUIRE_TIMEOUT_MS: '700',
        DATABASE_STARTUP_WAIT_MS: '0',
        METRICS_TOKEN: 'abcdefghijklmnopqrstuvwxyz012345',
        METRICS_QUEUE_REFRESH_MS: '1000',
        AUTH_FAILURES_PER_MINUTE: '5',
        RESULT_CACHE_SCOPE: 'GLOBAL',
      }),
    ).to.include({
      databaseStatementTimeoutMs: 1500,
      databaseAcquireTimeoutMs: 700,
      databaseStartupWaitMs: 0,
      metricsToken: 'abcdefghijklmnopqrstuvwxyz012345',
      metricsQueueRefreshMs: 1000,
      authFailuresPerMinute: 5,
      resultCacheScope: 'global',
    });
  });

  it('refuses a global pending cap below the per-client one', () => {
    expect(() => loadConfig({ CLIENT_MAX_PENDING: '10', MAX_PENDING_JOBS: '5' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.contains('MAX_PENDING_JOBS must be at least CLIENT_MAX_PENDING');
  });
});

describe('loadConfig(env): HEURISTIC=http', () => {
  const http = {
    HEURISTIC: 'http',
    HEURISTIC_URL: 'http://heuristic:9899/normalize_merchant',
    HEURISTIC_VERSION: 'orig-2026.04',
  };

  it('defaults to the bundled mock; http reads its URL, version, timeout and cache key', () => {
    expect(loadConfig({})).to.include({
      heuristic: 'mock',
      heuristicUrl: undefined,
      heuristicVersion: undefined,
      heuristicTimeoutMs: 35_000,
      heuristicCacheKey: 'transaction',
    });
    expect(
      loadConfig({ ...http, HEURISTIC_TIMEOUT_MS: '5000', HEURISTIC_CACHE_KEY: 'Description' }),
    ).to.include({
      heuristic: 'http',
      heuristicUrl: 'http://heuristic:9899/normalize_merchant',
      heuristicVersion: 'orig-2026.04',
      heuristicTimeoutMs: 5000,
      heuristicCacheKey: 'description',
    });
  });

  const bad: Array<[Record<string, string>, string]> = [
    [{ HEURISTIC: 'remote' }, 'HEURISTIC must be one of mock, http (got "remote")'],
    [{ ...http, HEURISTIC_URL: '' }, 'HEURISTIC_URL is required with HEURISTIC=http'],
    [{ ...http, HEURISTIC_URL: 'ftp://x/y' }, 'HEURISTIC_URL must be an http:// or https:// URL'],
    [{ ...http, HEURISTIC_VERSION: '' }, 'HEURISTIC_VERSION is required with HEURISTIC=http'],
    [{ ...http, HEURISTIC_VERSION: 'v 1' }, 'HEURISTIC_VERSION must be 1 to 100 visible ASCII'],
    [{ ...http, HEURISTIC_TIMEOUT_MS: '0' }, 'HEURISTIC_TIMEOUT_MS must be an integer'],
    [{ ...http, HEURISTIC_CACHE_KEY: 'amount' }, 'HEURISTIC_CACHE_KEY must be one of'],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)}: "${message}"`, () => {
      expect(() => loadConfig(env))
        .to.throw(ConfigError)
        .with.property('message')
        .that.contains(message);
    });
  }
});

describe('loadStandinConfig(env)', () => {
  it('defaults to port 9899, the original latency and no failures', () => {
    const config = loadStandinConfig({});
    expect(config).to.deep.include({
      port: 9899,
      host: '0.0.0.0',
      delayMs: { min: 1000, max: 30_000 },
      failures: [],
      logLevel: 'info',
    });
  });

  it('reads STANDIN_FAILURES as KIND:RATE pairs', () => {
    const config = loadStandinConfig({
      STANDIN_PORT: '0',
      STANDIN_DELAY_MS: '5-10',
      STANDIN_FAILURES: '503:0.1, reset:0.05,MALFORMED:0.02,hang:0.01,422:0',
    });
    expect(config.port).to.equal(0);
    expect(config.delayMs).to.deep.equal({ min: 5, max: 10 });
    expect(config.failures).to.deep.equal([
      { failure: '503', rate: 0.1 },
      { failure: 'reset', rate: 0.05 },
      { failure: 'malformed', rate: 0.02 },
      { failure: 'hang', rate: 0.01 },
      { failure: '422', rate: 0 },
    ]);
  });

  for (const spec of ['503', '200:0.1', 'boom:0.1', '503:1.5', '503:0.6,reset:0.6']) {
    it(`refuses STANDIN_FAILURES=${JSON.stringify(spec)}, naming it`, () => {
      expect(() => loadStandinConfig({ STANDIN_FAILURES: spec }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.contains('STANDIN_FAILURES');
    });
  }
});
