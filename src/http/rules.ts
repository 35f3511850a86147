/**
 * What each request field and query parameter must look like, said in words: the details of
 * the 422 and 400 problems (validation.ts), where ajv's own messages would name keywords.
 */
import { JOB_STATUSES, MAX_BATCH_SIZE, MAX_WAIT_SECONDS } from './schemas.js';

/** What a field must look like, said in words, for the errors ajv reports by keyword. */
export const FIELD_RULES: Record<string, string> = {
  transactions: `must be an array of 1 to ${MAX_BATCH_SIZE} transactions`,
  date: 'must be a real calendar date formatted YYYY-MM-DD, e.g. "2026-04-03"',
  description: 'must be a string of 1 to 500 characters, not only whitespace',
  amount: 'must be a finite JSON number, e.g. 15.49 or -3 (not a string)',
  currency: 'must be an upper-case ISO 4217 currency code, e.g. "USD"',
  mcc: 'must be a four-digit merchant category code as a string, e.g. "5411"',
  reference: 'must be a string of 1 to 200 characters',
  url: 'must be an absolute https:// URL of at most 2000 characters',
  events:
    'must be a non-empty list of distinct event types: job.succeeded, job.failed, job.canceled, batch.completed',
  enabled: 'must be true or false',
};

/** The same for query parameters. */
export const PARAMETER_RULES: Record<string, string> = {
  wait: `must be a whole number of seconds from 0 to ${MAX_WAIT_SECONDS}`,
  status: `must be one or more of ${JOB_STATUSES.join(', ')}, comma-separated`,
  batch: 'must be a batch id (a UUID)',
  limit: 'must be a whole number from 1 to 1000',
  cursor: "must be a `next_cursor` value from a previous page's answer",
  after: 'must be an event id (the `id:` of a message), digits only',
  types:
    'must be one or more of job.succeeded, job.failed, job.canceled, batch.completed, comma-separated',
  window: 'must be one of 15m, 1h, 6h, 24h',
};
