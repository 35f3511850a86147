/**
 * A typed client for the merchant-normalizer API, for apps and batch scripts (the CLI uses it).
 * It retries what is safe to retry: 429/502/503/504 and network errors, honouring Retry-After,
 * and POSTs only when they carry an Idempotency-Key (a replay then cannot create work twice).
 */
import type { Transaction } from '../heuristic/types.js';
import type { ProblemBody } from '../http/problem.js';
import type { BatchResource, JobResource } from '../http/views.js';

export type Job = JobResource;
export type Batch = BatchResource;
export type { Transaction };

/** A webhook endpoint as the API shows it; `secret` only when just created or rotated. */
export interface Webhook {
  id: string;
  url: string;
  description: string | null;
  events: string[];
  enabled: boolean;
  disabled_reason: 'manual' | 'gone' | 'failing' | null;
  disabled_at: string | null;
  failing_since: string | null;
  last_success_at: string | null;
  last_failure_at: string | null;
  previous_secret_expires_at: string | null;
  /** Deliveries neither delivered nor given up yet. */
  pending_deliveries: number;
  created_at: string;
  updated_at: string;
  deliveries: string;
  secret?: string;
}

/** One entry of a webhook's delivery log. */
export interface WebhookDelivery {
  id: string;
  event_id: string;
  event_type: string;
  status: 'pending' | 'delivering' | 'delivered' | 'failed';
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  last_attempt_at: string | null;
  next_attempt_at: string | null;
  created_at: string;
  finished_at: string | null;
}

export interface BatchItem {
  index: number;
  job_id: string;
  reference: string | null;
  status: Job['status'];
  result: Job['result'];
  error: Job['error'];
}

export interface ClientOptions {
  /** e.g. http://127.0.0.1:9898 */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; every call about jobs and batches needs one. */
  apiKey?: string;
  /** Attempts after the first for retryable failures. @defaultValue 8 */
  maxRetries?: number;
  /** Cap on one backoff sleep when the server gives no Retry-After. @defaultValue 30000 */
  maxBackoffMs?: number;
  /** Called before each retry sleep (for progress output). */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
  fetch?: typeof fetch;
}

/** The call that failed: method and full URL. */
export interface RequestInfo {
  method: string;
  url: string;
}

/** An answer that is not what was asked for: carries the problem+json body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: ProblemBody | undefined,
    /** The call that got this answer. */
    readonly request?: RequestInfo,
  ) {
    super(
      problem
        ? `${status} ${problem.title}${problem.detail ? `: ${problem.detail}` : ''}`
        : `HTTP ${status}`,
    );
    this.name = 'ApiError';
  }
}

/** No answer at all (refused, reset, DNS, timeout), after any retries: names the URL tried. */
export class NetworkError extends Error {
  constructor(
    readonly request: RequestInfo,
    /** `ECONNREFUSED`, `ENOTFOUND`, … or the underlying message. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${request.method} ${request.url}: ${reason}`, options);
    this.name = 'NetworkError';
  }
}

/** A conditional read: `notModified` when the server answered 304 to the given ETag. */
export interface Read<T> {
  value: T | undefined;
  etag: string | undefined;
  notModified: boolean;
  /** Seconds the server suggests before looking again (absent once finished). */
  retryAfter: number | undefined;
}

const RETRYABLE = new Set([429, 502, 503, 504]);

export class MerchantClient {
  private readonly base: string;
  private readonly fetch: typeof fetch;

  constructor(private readonly opts: ClientOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.fetch = opts.fetch ?? globalThis.fetch;
  }

  /** Submits one transaction. With `waitSeconds`, the job may come back finished. */
  async submit(
    tx: Transaction,
    opts: { idempotencyKey?: string; waitSeconds?: number } = {},
  ): Promise<{ job: Job; replayed: boolean }> {
    const res = await this.send('POST', '/normalize_merchant', tx, submitHeaders(opts), opts);
    return { job: (await res.json()) as Job, replayed: res.headers.has('idempotent-replayed') };
  }

  /** Submits 1..1000 transactions as one batch; `batch.job_ids` lists the jobs in order. */
  async submitBatch(
    transactions: readonly Transaction[],
    opts: { idempotencyKey?: string; waitSeconds?: number } = {},
  ): Promise<{
    batch: Batch & { job_ids: string[] };
    etag: string | undefined;
    replayed: boolean;
  }> {
    const res = await this.send(
      'POST',
      '/normalize_merchant/batch',
      { transactions },
      submitHeaders(opts),
      opts,
    );
    return {
      batch: (await res.json()) as Batch & { job_ids: string[] },
      etag: res.headers.get('etag') ?? undefined,
      replayed: res.headers.has('idempotent-replayed'),
    };
  }

  /** Reads a job; `wait` long-polls up to that many seconds (until finished or changed). */
  getJob(id: string, opts: { wait?: number; etag?: string } = {}): Promise<Read<Job>> {
    return this.read<Job>(`/jobs/${encodeURIComponent(id)}`, opts);
  }

  /** Reads a batch's progress; `wait` long-polls (with `etag`: until anything changed). */
  getBatch(id: string, opts: { wait?: number; etag?: string } = {}): Promise<Read<Batch>> {
    return this.read<Batch>(`/batches/${encodeURIComponent(id)}`, opts);
  }

  /** Every item of a batch in submission order, page by page. */
  async *batchResults(id: string, pageSize = 1000): AsyncGenerator<BatchItem> {
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams({ limit: String(pageSize) });
      if (cursor) query.set('cursor', cursor);
      const res = await this.send(
        'GET',
        `/batches/${encodeURIComponent(id)}/results?${query.toString()}`,
      );
      const page = (await res.json()) as { items: BatchItem[]; next_cursor: string | null };
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** Cancels a pending or running job; a finished one is an ApiError with status 409. */
  async cancel(id: string): Promise<Job> {
    const res = await this.send('DELETE', `/jobs/${encodeURIComponent(id)}`);
    return (await res.json()) as Job;
  }

  /** One page of jobs, newest first. */
  async listJobs(
    filter: { status?: Job['status'][]; batch?: string; limit?: number; cursor?: string } = {},
  ): Promise<{ jobs: Job[]; next_cursor: string | null }> {
    const query = new URLSearchParams();
    if (filter.status) query.set('status', filter.status.join(','));
    if (filter.batch) query.set('batch', filter.batch);
    if (filter.limit) query.set('limit', String(filter.limit));
    if (filter.cursor) query.set('cursor', filter.cursor);
    const res = await this.send('GET', `/jobs?${query.toString()}`);
    return (await res.json()) as { jobs: Job[]; next_cursor: string | null };
  }

  /** Registers a webhook endpoint; the answer's `secret` is shown only now. */
  async createWebhook(endpoint: {
    url: string;
    events?: string[];
    description?: string;
  }): Promise<Webhook> {
    return (await (await this.send('POST', '/webhooks', endpoint)).json()) as Webhook;
  }

  async listWebhooks(): Promise<Webhook[]> {
    const res = await this.send('GET', '/webhooks');
    return ((await res.json()) as { webhooks: Webhook[] }).webhooks;
  }

  async getWebhook(id: string): Promise<Webhook> {
    return (await (await this.send('GET', webhookPath(id))).json()) as Webhook;
  }

  /** Changes url, events, description; `enabled` disables it or enables it again. */
  async updateWebhook(
    id: string,
    patch: { url?: string; events?: string[]; description?: string | null; enabled?: boolean },
  ): Promise<Webhook> {
    return (await (await this.send('PATCH', webhookPath(id), patch)).json()) as Webhook;
  }

  async deleteWebhook(id: string): Promise<void> {
    await this.send('DELETE', webhookPath(id));
  }

  /** A new secret (in the answer); the old one keeps signing beside it for 24 h. */
  async rotateWebhookSecret(id: string): Promise<Webhook> {
    const res = await this.send('POST', `${webhookPath(id)}/rotate-secret`);
    return (await res.json()) as Webhook;
  }

  /** One page of a webhook's delivery log, newest first. */
  async webhookDeliveries(
    id: string,
    page: { limit?: number; cursor?: string } = {},
  ): Promise<{ deliveries: WebhookDelivery[]; next_cursor: string | null }> {
    const query = new URLSearchParams();
    if (page.limit) query.set('limit', String(page.limit));
    if (page.cursor) query.set('cursor', page.cursor);
    const res = await this.send('GET', `${webhookPath(id)}/deliveries?${query.toString()}`);
    return (await res.json()) as { deliveries: WebhookDelivery[]; next_cursor: string | null };
  }

  /** Sends a delivery again now, with the same webhook-id. */
  async redeliver(id: string, deliveryId: string): Promise<WebhookDelivery> {
    const path = `${webhookPath(id)}/deliveries/${encodeURIComponent(deliveryId)}/redeliver`;
    return (await (await this.send('POST', path)).json()) as WebhookDelivery;
  }

  private async read<T>(path: string, opts: { wait?: number; etag?: string }): Promise<Read<T>> {
    const query = opts.wait ? `?wait=${opts.wait}` : '';
    const headers: Record<string, string> = opts.etag ? { 'If-None-Match': opts.etag } : {};
    const res = await this.send('GET', path + query, undefined, headers, {}, [304, 404]);
    const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
    const etag = res.headers.get('etag') ?? undefined;
    if (res.status === 404) {
      await res.body?.cancel();
      return { value: undefined, etag, notModified: false, retryAfter };
    }
    if (res.status === 304) return { value: undefined, etag, notModified: true, retryAfter };
    return { value: (await res.json()) as T, etag, notModified: false, retryAfter };
  }

  /**
   * One call with retries. GETs and DELETEs are always safe to repeat; a POST only with an
   * Idempotency-Key, except on 429/503 (the server said it stored nothing).
   */
  private async send(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    opts: { idempotencyKey?: string } = {},
    accept: readonly number[] = [],
  ): Promise<Response> {
    const maxRetries = this.opts.maxRetries ?? 8;
    const safe = method !== 'POST' || opts.idempotencyKey !== undefined;
    const request: RequestInfo = { method, url: this.base + path };
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await this.fetch(request.url, {
          method,
          headers: {
            accept: 'application/json',
            ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        const reason = describe(err);
        if (!safe || attempt >= maxRetries) throw new NetworkError(request, reason, { cause: err });
        await this.pause(attempt, undefined, `network error: ${reason} at ${request.url}`);
        continue;
      }
      if (res.ok || accept.includes(res.status)) return res;
      const problem = await readProblem(res);
      const mayRetry =
        RETRYABLE.has(res.status) && (safe || res.status === 429 || res.status === 503);
      if (!mayRetry || attempt >= maxRetries) throw new ApiError(res.status, problem, request);
      await this.pause(
        attempt,
        parseRetryAfter(res.headers.get('retry-after')),
        `${res.status} ${problem?.title ?? ''}`.trim(),
      );
    }
  }

  private async pause(attempt: number, retryAfterSeconds: number | undefined, reason: string) {
    const backoff = Math.min(this.opts.maxBackoffMs ?? 30_000, 500 * 2 ** attempt);
    const delayMs = retryAfterSeconds !== undefined ? retryAfterSeconds * 1000 : backoff;
    this.opts.onRetry?.({ attempt: attempt + 1, delayMs, reason });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

const webhookPath = (id: string) => `/webhooks/${encodeURIComponent(id)}`;

function submitHeaders(opts: { idempotencyKey?: string; waitSeconds?: number }) {
  const headers: Record<string, string> = {};
  if (opts.idempotencyKey !== undefined) {
    headers['Idempotency-Key'] = `"${opts.idempotencyKey}"`;
  }
  if (opts.waitSeconds) headers.Prefer = `wait=${opts.waitSeconds}`;
  return headers;
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

async function readProblem(res: Response): Promise<ProblemBody | undefined> {
  try {
    return (await res.json()) as ProblemBody;
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
