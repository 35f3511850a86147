/**
 * Standard Webhooks signing (https://www.standardwebhooks.com), with the `standardwebhooks`
 * library rather than hand-rolled HMAC: `webhook-signature` is `v1,<base64 HMAC-SHA256 of
 * "id.timestamp.body">`, one per secret that signs (during a rotation, the new and the old one,
 * space-separated), so a receiver verifying with either secret accepts the message.
 */
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** Secrets are `whsec_` + base64 of 32 random bytes, as the library and the spec expect. */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** The three Standard Webhooks headers for one attempt of message `id`. */
export function signedHeaders(
  id: string,
  timestamp: Date,
  body: string,
  secrets: readonly string[],
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  if (secrets.length === 0) throw new Error('no secret to sign with');
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': secrets
      .map((secret) => new Webhook(secret).sign(id, timestamp, body))
      .join(' '),
  };
}
