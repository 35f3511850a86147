/**
 * `npm run standin`: the stand-in for the original synchronous heuristic service (see
 * server.ts). Configured by STANDIN_PORT, STANDIN_HOST, STANDIN_DELAY_MS, STANDIN_FAILURES and
 * LOG_LEVEL; point the service at it with HEURISTIC=http HEURISTIC_URL=http://HOST:PORT/normalize_merchant.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../config.js';
import { loadStandinConfig } from './config.js';
import { createLogger } from '../log.js';
import { STANDIN_PATH, createStandinServer } from './server.js';

async function main() {
  let config;
  try {
    config = loadStandinConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel).child({ component: 'heuristic-standin' });
  const server = createStandinServer({ delayMs: config.delayMs, failures: config.failures, log });
  server.listen(config.port, config.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  log.info(
    {
      url: `http://${host}:${port}${STANDIN_PATH}`,
      delayMs: config.delayMs,
      failures: config.failures,
    },
    'listening',
  );

  const stop = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'shutting down');
    server.close(() => process.exit(0));
    // Requests held by their delay (or hanging on purpose) are not waited for.
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

void main();
