/**
 * One delivery attempt over HTTP: resolve and check the address (ssrf.ts), connect to exactly
 * that address, POST the signed body, and report the status code. Redirects are not followed
 * (a 3xx is a failed attempt), the whole attempt has a time limit, and the response body is
 * discarded unread beyond what the socket brings (it is never logged or stored).
 */
import http from 'node:http';
import https from 'node:https';
import { VERSION } from '../version.js';
import {
  type AddressPolicy,
  type Resolve,
  UrlRefusedError,
  checkUrlForm,
  pinnedLookup,
  resolveTarget,
  systemResolve,
} from './ssrf.js';

export type AttemptResult =
  | { kind: 'answered'; status: number }
  /** No answer: refused address, DNS, connection, TLS, timeout. `error` says which. */
  | { kind: 'unanswered'; error: string };

export interface SendOptions {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  policy: AddressPolicy;
  resolve?: Resolve;
  /** Aborts the attempt (shutdown). */
  signal?: AbortSignal;
}

export async function sendWebhook(opts: SendOptions): Promise<AttemptResult> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([deadline, opts.signal]) : deadline;
  let target;
  let url: URL;
  try {
    url = checkUrlForm(opts.url, opts.policy);
    target = await raceAbort(
      resolveTarget(url, opts.policy, opts.resolve ?? systemResolve),
      signal,
    );
  } catch (err) {
    if (err instanceof UrlRefusedError)
      return { kind: 'unanswered', error: `refused: ${err.message}` };
    return { kind: 'unanswered', error: describe(err, deadline, opts.timeoutMs) };
  }
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<AttemptResult>((resolve) => {
    const req = transport.request(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(opts.body),
          'user-agent': `merchant-normalizer-webhooks/${VERSION}`,
          ...opts.headers,
        },
        lookup: pinnedLookup(target),
        // A connection of its own: a pooled socket would skip the address check.
        agent: false,
        signal,
      },
      (res) => {
        // The status is the answer; the body is not read, only drained.
        res.resume();
        res.on('error', () => undefined);
        resolve({ kind: 'answered', status: res.statusCode ?? 0 });
      },
    );
    req.on('error', (err) =>
      resolve({ kind: 'unanswered', error: describe(err, deadline, opts.timeoutMs) }),
    );
    req.end(opts.body);
  });
}

function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A short, secret-free description of why an attempt got no answer. */
function describe(err: unknown, deadline: AbortSignal, timeoutMs: number): string {
  if (deadline.aborted) return `timed out after ${timeoutMs} ms`;
  const e = err as { code?: string; name?: string; message?: string };
  if (e.name === 'AbortError') return 'aborted';
  return e.code
    ? `${e.code}${e.message ? `: ${e.message}` : ''}`.slice(0, 300)
    : String(e.message ?? err).slice(0, 300);
}
