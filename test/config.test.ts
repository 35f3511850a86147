import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config.js';

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
    ['JOB_MAX_ATTEMPTS', '0'],
    ['JOB_RETENTION_DAYS', '-1'],
    // Idempotency keys live as long as their jobs: at least a day.
    ['JOB_RETENTION_DAYS', '0.5'],
    ['DATABASE_URL', 'mysql://localhost/x'],
    ['LOG_LEVEL', 'loud'],
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

  it('refuses a global pending cap below the per-client one', () => {
    expect(() => loadConfig({ CLIENT_MAX_PENDING: '10', MAX_PENDING_JOBS: '5' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.contains('MAX_PENDING_JOBS must be at least CLIENT_MAX_PENDING');
  });
});
