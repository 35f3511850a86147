/**
 * A TCP proxy in front of Postgres, for faults that must not touch the shared server: refusing
 * new connections (the server is down for newcomers), stalling (the server is alive but
 * answers nothing), and cutting every connection.
 */
import { once } from 'node:events';
import net from 'node:net';

export class TcpProxy {
  /** Connections refused since the proxy started. */
  refused = 0;
  private refusing = false;
  private stalled = false;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
  ) {}

  /** A proxy on a free loopback port forwarding to `targetUrl`'s host and port. */
  static async start(targetUrl: string): Promise<TcpProxy> {
    const url = new URL(targetUrl);
    const target = { host: url.hostname, port: Number(url.port || 5432) };
    const server = net.createServer();
    const proxy = new TcpProxy(server, target);
    server.on('connection', (client) => proxy.accept(client));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The local ports of the proxy's connections to the server (`client_port` in pg_stat_activity). */
  upstreamPorts(): number[] {
    return [...this.pairs].map((p) => p.upstream.localPort).filter((p) => p !== undefined);
  }

  /** `databaseUrl` with its host and port replaced by the proxy's. */
  urlFor(databaseUrl: string): string {
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  /** While on, new connections are closed at once (established ones carry on). */
  refuseNew(on: boolean): void {
    this.refusing = on;
  }

  /** While on, nothing is forwarded either way: the server seems alive but never answers. */
  stall(on: boolean): void {
    this.stalled = on;
    for (const pair of this.pairs) this.flow(pair, !on);
  }

  /** Cuts every open connection. */
  dropAll(): void {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    const closed = once(this.server, 'close');
    this.server.close();
    await closed;
  }

  private accept(client: net.Socket) {
    if (this.refusing) {
      this.refused += 1;
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    this.flow(pair, !this.stalled);
  }

  /** Forwards both ways, or holds what arrives (buffered, unread) until forwarding again. */
  private flow({ client, upstream }: { client: net.Socket; upstream: net.Socket }, on: boolean) {
    if (on) {
      client.pipe(upstream);
      upstream.pipe(client);
    } else {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }
}
