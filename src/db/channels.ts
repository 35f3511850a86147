/**
 * NOTIFY channels. Every process LISTENs on all of them over one connection (PgNotifier).
 */

/**
 * Jobs became claimable (a submit, a retry due now, a job handed back). Payload: after a submit,
 * the submitting process's origin (runner/announce.ts), which ignores its own announcement: it
 * woke its runner when the insert returned, and claiming again on the echo found nothing (one
 * empty claim per idle submit). Empty otherwise: every process, this one included, looks.
 */
export const PENDING_CHANNEL = 'merchant_jobs_pending';

/**
 * Events were appended to the log (job_events): payload `origin:tx,tx,…`, the writing process
 * and the ids of transactions that appended events, sent after they committed (src/jobs/events.ts).
 */
export const EVENTS_CHANNEL = 'merchant_events';

/** An API key was revoked (payload: the key id): every process drops it from its cache. */
export const KEYS_REVOKED_CHANNEL = 'merchant_keys_revoked';

/**
 * Push delivery: payload `endpoints` when webhook endpoints changed (created, updated, disabled,
 * deleted), `due` when deliveries became due now (fanned out, redelivered).
 */
export const WEBHOOKS_CHANNEL = 'merchant_webhooks';
