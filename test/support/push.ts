/** Push delivery in tests: the settings they run with, and registering at a Receiver. */
import type { Config } from '../../src/config.js';
import type { Harness } from './harness.js';
import type { Receiver } from './receiver.js';

/**
 * Loopback receivers allowed (WEBHOOK_ALLOW_PRIVATE), short retries, and an hour's poll: what
 * happens quickly happened through a wake-up.
 */
export const pushConfig = (extra: Partial<Config> = {}): Partial<Config> => ({
  webhookAllowPrivate: true,
  webhookRetryScheduleMs: [50, 100, 200],
  webhookTimeoutMs: 2000,
  webhookPollMs: 3_600_000,
  ...extra,
});

/** Registers an endpoint at the receiver (path `path`); the receiver learns its secret. */
export async function register(
  h: Harness,
  receiver: Receiver,
  body: Record<string, unknown> = {},
  path = '/hook',
): Promise<{ id: string; secret: string }> {
  const res = await h.http
    .post('/webhooks')
    .send({ url: `${receiver.url}${path}`, ...body })
    .expect(201);
  receiver.secrets.push(res.body.secret);
  return res.body;
}
