import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';

/** An HTTP server for `app` on host:port, with timeouts sized for long-polls; resolves listening. */
export async function listen(
  app: Koa,
  host: string,
  port: number,
): Promise<{ server: http.Server; url: string; port: number; address: string }> {
  const handle = app.callback();
  const server = http.createServer((req, res) => void handle(req, res));
  // Slow or stalled clients must not hold sockets forever; a long-poll may take 60 s.
  server.requestTimeout = 75_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.listen(port, host);
  await once(server, 'listening');
  const { port: bound, address } = server.address() as AddressInfo;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${bound}`;
  return { server, url, port: bound, address };
}

/** Stops accepting, closes idle keep-alive sockets, resolves when every request is answered. */
export async function close(server: http.Server): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, 'close');
  server.close();
  server.closeIdleConnections();
  await closed;
}
