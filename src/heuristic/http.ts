/**
 * The heuristic as a remote service: the original synchronous API, `POST {date, description,
 * amount}` answering `{"merchant": {"name": …}}` (plus, optionally, `merchant.id` and
 * `intermediaries`), called through a keep-alive connection pool (undici) sized to the
 * runner's slots.
 *
 * What a failure means for the job: network errors, timeouts, 5xx, 408 and 429 are retried
 * through the job's attempts; any other 4xx is a `NonRetryableError` (the service refuses this
 * transaction, asking again cannot help); a malformed answer is retried, with a message naming
 * what was wrong.
 */
import { Pool } from 'undici';
import type { HeuristicCacheKey } from '../config.js';
import { AttemptTimeoutError } from '../runner/errors.js';
import { NonRetryableError } from './errors.js';
import { HttpHeuristicMetrics, type HttpOutcome } from './http-metrics.js';
import { parseAnswer } from './http-answer.js';
import type { Heuristic, MatchResult, Transaction } from './types.js';

export interface HttpHeuristicOptions {
  /** The endpoint, e.g. `http://heuristic:9899/normalize_merchant`; user:password@ is sent as Basic auth. */
  url: string;
  /** The answers' version, part of every result-cache key. */
  version: string;
  /** Keep-alive connections to keep: the runner's slots, so no attempt waits for a socket. */
  connections: number;
  /** Limit on one call, from sending to the last byte of the answer. */
  timeoutMs: number;
  /** What the result cache keys on. @defaultValue transaction */
  cacheKey?: HeuristicCacheKey;
  metrics?: HttpHeuristicMetrics;
}

/** A retryable failure of the remote heuristic (network, 5xx, 408/429, malformed answer). */
export class HeuristicCallError extends Error {
  constructor(
    readonly kind: Exclude<HttpOutcome, 'ok' | 'aborted' | 'timeout'>,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'HeuristicCallError';
  }
}

/** Largest answer read; the original's is a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;
/** How much of an error answer goes into the job's error message. */
const EXCERPT_CHARS = 200;

export class HttpHeuristic implements Heuristic {
  readonly version: string;
  readonly metrics: HttpHeuristicMetrics;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly origin: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly opts: HttpHeuristicOptions) {
    const url = new URL(opts.url);
    this.version = opts.version;
    this.metrics = opts.metrics ?? new HttpHeuristicMetrics();
    this.origin = url.origin;
    this.path = url.pathname + url.search;
    this.headers = { 'content-type': 'application/json', accept: 'application/json' };
    if (url.username || url.password) {
      const user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
      this.headers.authorization = `Basic ${Buffer.from(user).toString('base64')}`;
    }
    // undici's own timeouts only back ours up: ours covers the whole call.
    this.pool = new Pool(url.origin, {
      connections: opts.connections,
      headersTimeout: opts.timeoutMs + 1000,
      bodyTimeout: opts.timeoutMs + 1000,
    });
  }

  key(tx: Transaction): string | null {
    switch (this.opts.cacheKey ?? 'transaction') {
      case 'description':
        return tx.description;
      case 'none':
        return null;
      default:
        return JSON.stringify([tx.date, tx.description, tx.amount]);
    }
  }

  async match(tx: Transaction, signal: AbortSignal): Promise<MatchResult> {
    signal.throwIfAborted();
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new AttemptTimeoutError(this.opts.timeoutMs)),
      this.opts.timeoutMs,
    );
    const both = AbortSignal.any([signal, timeout.signal]);
    const started = performance.now();
    let outcome: HttpOutcome = 'ok';
    try {
      return await this.call(tx, both);
    } catch (err) {
      const error: unknown = both.aborted ? both.reason : err;
      outcome = outcomeOf(error);
      throw error;
    } finally {
      clearTimeout(timer);
      this.metrics.observe(outcome, (performance.now() - started) / 1000);
    }
  }

  private async call(tx: Transaction, signal: AbortSignal): Promise<MatchResult> {
    const { date, description, amount } = tx;
    let res;
    try {
      res = await this.pool.request({
        path: this.path,
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify({ date, description, amount }),
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new HeuristicCallError(
        'network',
        `heuristic at ${this.origin} unreachable: ${describe(err)}`,
        {
          cause: err,
        },
      );
    }
    const status = res.statusCode;
    let body: string;
    try {
      body = await readAtMost(res.body, MAX_ANSWER_BYTES);
    } catch (err) {
      if (signal.aborted) throw err;
      if (err instanceof HeuristicCallError) throw err;
      throw new HeuristicCallError(
        'network',
        `heuristic answer from ${this.origin} cut off: ${describe(err)}`,
        {
          cause: err,
        },
      );
    }
    if (status >= 200 && status < 300) {
      try {
        return parseAnswer(body);
      } catch (err) {
        throw new HeuristicCallError('malformed', `heuristic answer malformed: ${describe(err)}`, {
          cause: err,
        });
      }
    }
    const said = `heuristic answered ${status}${excerpt(body)}`;
    // "Too slow" and "too many": the transaction is fine, another attempt may be answered.
    if (status === 408 || status === 429) throw new HeuristicCallError('http_4xx', said);
    if (status >= 400 && status < 500) throw new NonRetryableError(said);
    if (status >= 500) throw new HeuristicCallError('http_5xx', said);
    // 1xx never reaches here; 3xx is not followed: the endpoint is configured, not discovered.
    throw new HeuristicCallError('malformed', `${said} (redirects are not followed)`);
  }

  /** Closes the pool's connections once the calls in flight have ended; again is a no-op. */
  async close(): Promise<void> {
    if (!this.pool.closed && !this.pool.destroyed) await this.pool.close();
  }
}

function outcomeOf(err: unknown): HttpOutcome {
  if (err instanceof AttemptTimeoutError) return 'timeout';
  if (err instanceof HeuristicCallError) return err.kind;
  if (err instanceof NonRetryableError) return 'http_4xx';
  return 'aborted';
}

async function readAtMost(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number) {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw new HeuristicCallError('malformed', `heuristic answer larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function excerpt(body: string): string {
  const text = body.replace(/\s+/g, ' ').trim();
  if (text === '') return '';
  return `: ${text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}…` : text}`;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const message = err.message || err.name;
  return typeof code === 'string' && !message.includes(code)
    ? `${code} ${message}`.trim()
    : message;
}
