/**
 * A real webhook receiver on loopback (node:http): records every request, verifies its
 * signature with the `standardwebhooks` library against the secrets it is given, and answers
 * as the test says (a status, a delay, never).
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The parsed body, if the signature verified with one of the secrets. */
  verified: unknown;
  /** Which secrets (by index in `secrets`) verify it. */
  verifiedWith: number[];
  at: number;
}

/** What to answer to one request: a status (after `delayMs`), or `hang` (never answer). */
export type Answer =
  { status: number; delayMs?: number; headers?: Record<string, string> } | 'hang';

export class Receiver {
  readonly received: Received[] = [];
  /** Secrets to verify with (set once the endpoint is registered). */
  secrets: string[] = [];
  /** Decides each answer; by default 204. */
  answer: (req: Received) => Answer = () => ({ status: 204 });
  /** Requests being answered now, and the most at once. */
  inFlight = 0;
  maxInFlight = 0;
  private readonly hanging = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(): Promise<Receiver> {
    const server = http.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const receiver = new Receiver(server, `http://127.0.0.1:${port}`);
    server.on('request', (req, res) => void receiver.handle(req, res));
    return receiver;
  }

  /** Received requests that verified, parsed. */
  get messages(): {
    type: string;
    timestamp: string;
    data: { id: string } & Record<string, unknown>;
  }[] {
    return this.received.filter((r) => r.verified !== undefined).map((r) => r.verified as never);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const verifiedWith: number[] = [];
    let verified: unknown;
    this.secrets.forEach((secret, i) => {
      try {
        verified = new Webhook(secret).verify(body, req.headers as Record<string, string>);
        verifiedWith.push(i);
      } catch {
        // not signed with this one
      }
    });
    const received: Received = {
      path: req.url ?? '',
      headers: req.headers,
      body,
      verified,
      verifiedWith,
      at: Date.now(),
    };
    this.received.push(received);
    const answer = this.answer(received);
    if (answer === 'hang') {
      this.hanging.add(res);
      res.on('close', () => this.hanging.delete(res));
      return;
    }
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
    this.inFlight--;
    res.writeHead(answer.status, answer.headers).end();
  }

  /** Stops listening: connections are refused until `listenAgain`. */
  async down(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    const port = Number(new URL(this.url).port);
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
  }

  async close(): Promise<void> {
    if (this.server.listening) await this.down();
  }
}
