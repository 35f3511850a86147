/** The push-delivery settings of loadConfig: defaults, parsing, refusals naming the variable. */
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config.js';

describe('loadConfig(env): webhooks and the event stream', () => {
  it('defaults: https and public addresses only, 10 s attempts, retries for about 3 days', () => {
    const config = loadConfig({});
    expect(config).to.include({
      webhookAllowPrivate: false,
      webhookTimeoutMs: 10_000,
      webhookConcurrency: 16,
      webhookEndpointConcurrency: 4,
      webhookDisableAfterMs: 5 * 24 * 3_600_000,
      webhookPollMs: 30_000,
      eventsHeartbeatMs: 15_000,
    });
    const schedule = config.webhookRetryScheduleMs;
    expect(schedule.slice(0, 4)).to.deep.equal([5_000, 300_000, 1_800_000, 7_200_000]);
    const total = schedule.reduce((a, b) => a + b, 0) / (24 * 3_600_000);
    expect(total).to.be.within(2.5, 3.5);
  });

  it('reads WEBHOOK_RETRY_SCHEDULE as durations with units, and the other variables', () => {
    const config = loadConfig({
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_SCHEDULE: '50ms, 2s,1m,1h,1d,250',
      WEBHOOK_TIMEOUT_MS: '500',
      WEBHOOK_CONCURRENCY: '3',
      WEBHOOK_ENDPOINT_CONCURRENCY: '1',
      WEBHOOK_DISABLE_AFTER_MS: '60000',
      WEBHOOK_POLL_MS: '1000',
      EVENTS_HEARTBEAT_MS: '100',
      EVENTS_MAX_STREAMS_PER_CLIENT: '3',
    });
    expect(config.webhookRetryScheduleMs).to.deep.equal([
      50, 2000, 60_000, 3_600_000, 86_400_000, 250,
    ]);
    expect(config).to.include({
      webhookAllowPrivate: true,
      webhookTimeoutMs: 500,
      webhookConcurrency: 3,
      webhookEndpointConcurrency: 1,
      webhookDisableAfterMs: 60_000,
      webhookPollMs: 1000,
      eventsHeartbeatMs: 100,
      eventsMaxStreamsPerClient: 3,
    });
    expect(loadConfig({}).eventsMaxStreamsPerClient).to.equal(100);
    expect(loadConfig({ WEBHOOK_ALLOW_PRIVATE: '0' }).webhookAllowPrivate).to.equal(false);
  });

  const bad: Array<[string, string]> = [
    ['WEBHOOK_ALLOW_PRIVATE', 'yes'],
    ['WEBHOOK_RETRY_SCHEDULE', '5x'],
    ['WEBHOOK_RETRY_SCHEDULE', '5s,,5m'],
    ['WEBHOOK_RETRY_SCHEDULE', '8d'],
    ['WEBHOOK_TIMEOUT_MS', '0'],
    ['WEBHOOK_CONCURRENCY', '0'],
    ['WEBHOOK_ENDPOINT_CONCURRENCY', 'many'],
    ['WEBHOOK_DISABLE_AFTER_MS', '10'],
    ['EVENTS_HEARTBEAT_MS', '1'],
    ['EVENTS_MAX_STREAMS_PER_CLIENT', '0'],
  ];
  for (const [name, value] of bad) {
    it(`rejects ${name}=${JSON.stringify(value)} with a message naming it`, () => {
      expect(() => loadConfig({ [name]: value }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.contains(name);
    });
  }
});
