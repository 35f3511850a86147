/**
 * A stand-in for the original synchronous heuristic service, for development and tests: its
 * contract (`POST /normalize_merchant` with `{date, description, amount}`, answering
 * `{"merchant": {"name": …}}`), its latency (1-30 s by default), and the bundled recogniser's
 * answers, with `merchant.id` and `intermediaries` added. Failures can be injected by rate:
 * an HTTP status, a dropped connection, a malformed answer, or no answer at all.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DelayRange } from '../config.js';
import type { StandinConfig, StandinFailure } from './config.js';
import { recognise } from '../heuristic/recognise.js';
import type { Logger } from '../log.js';

export interface StandinOptions {
  delayMs: DelayRange;
  failures: StandinConfig['failures'];
  log: Logger;
  /** Source of randomness (delays and failures). @defaultValue Math.random */
  random?: () => number;
}

export const STANDIN_PATH = '/normalize_merchant';
const MAX_BODY_BYTES = 16 * 1024;

export function createStandinServer(opts: StandinOptions): http.Server {
  const random = opts.random ?? Math.random;
  return http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      opts.log.error({ err }, 'stand-in request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://standin');
    if (url.pathname === '/healthz' && req.method === 'GET') return send(res, 200, { ok: true });
    if (url.pathname !== STANDIN_PATH) return send(res, 404, { error: `no route ${url.pathname}` });
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return send(res, 405, { error: 'use POST' });
    }
    const body = await readBody(req);
    if (body === undefined) return send(res, 413, { error: `body over ${MAX_BODY_BYTES} bytes` });
    const problem = checkTransaction(body);
    if (typeof problem === 'string') return send(res, 422, { error: problem });

    // The client may give up (its timeout, a cancel): stop waiting for it then.
    const gone = new AbortController();
    res.on('close', () => gone.abort());
    const failure = drawFailure(opts.failures, random());
    const { min, max } = opts.delayMs;
    const delayMs = min + Math.round(random() * (max - min));
    const started = performance.now();
    const done = (status: number | string) =>
      opts.log.info(
        { status, delayMs, failure, ms: Math.round(performance.now() - started) },
        'stand-in request',
      );
    if (failure === 'hang') {
      done('hang');
      return; // never answers; the socket closes when the client gives up
    }
    try {
      await sleep(delayMs, undefined, { signal: gone.signal });
    } catch {
      return done('client gone');
    }
    if (failure === 'reset') {
      req.socket.destroy();
      return done('reset');
    }
    if (failure === 'malformed') {
      send(res, 200, { merchant: { name: 42 } });
      return done('malformed');
    }
    if (failure !== undefined) {
      send(res, Number(failure), { error: `injected failure ${failure}` });
      return done(Number(failure));
    }
    send(res, 200, recognise(problem.description));
    done(200);
  }
}

function drawFailure(
  failures: StandinOptions['failures'],
  draw: number,
): StandinFailure | undefined {
  let cumulative = 0;
  for (const { failure, rate } of failures) {
    cumulative += rate;
    if (draw < cumulative) return failure;
  }
  return undefined;
}

async function readBody(req: http.IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The transaction in `body`, or what is wrong with it (the original's three fields). */
function checkTransaction(body: string): { description: string } | string {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return 'body is not JSON';
  }
  if (typeof json !== 'object' || json === null) return 'body must be a JSON object';
  const { date, description, amount } = json as Record<string, unknown>;
  if (typeof date !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(date)) {
    return 'date must be a YYYY-MM-DD string';
  }
  if (typeof description !== 'string' || description.trim() === '') {
    return 'description must be a non-empty string';
  }
  if (typeof amount !== 'number' || !Number.isFinite(amount)) return 'amount must be a number';
  return { description };
}

function send(res: http.ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
