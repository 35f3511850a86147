/**
 * Plugging an in-process heuristic into the service: implement `Heuristic` (src/heuristic/
 * types.ts) and hand it to `startService(config, { heuristic })`. Run it with
 *
 *   node --import tsx examples/in-process-heuristic.ts
 *
 * (same environment as `npm start`; the HEURISTIC_* settings are ignored). This one knows a
 * few merchants by their statement prefix and asks the bundled recogniser about the rest.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/config.js';
import { recognise } from '../src/heuristic/recognise.js';
import type { Heuristic, MatchResult, Transaction } from '../src/heuristic/types.js';
import { NonRetryableError } from '../src/heuristic/errors.js';
import { startService } from '../src/service.js';

/** Our own merchants, by the prefix our card statements print. */
const OWN_MERCHANTS: Record<string, { name: string; id: string }> = {
  'ACME CANTEEN': { name: 'Acme Canteen', id: 'acme-canteen' },
  'ACME PARKING': { name: 'Acme Parking', id: 'acme-parking' },
};

export const tableHeuristic: Heuristic = {
  // Change it whenever the answers change: cached answers of another version are not reused.
  version: 'acme-table-1',

  // What the answer depends on, for the result cache (null: never cache this transaction).
  key: (tx: Transaction) => tx.description.trim().toUpperCase(),

  async match(tx: Transaction, signal: AbortSignal): Promise<MatchResult> {
    // Slow work must stop when the signal aborts (timeout, cancel, shutdown): pass it on.
    await sleep(10, undefined, { signal });
    const text = tx.description.trim().toUpperCase();
    // Retrying cannot help with this one: fail the job at once.
    if (text.startsWith('ACME TEST')) throw new NonRetryableError('test transactions are refused');
    const own = Object.entries(OWN_MERCHANTS).find(([prefix]) => text.startsWith(prefix));
    if (own) return { merchant: own[1], intermediaries: [] };
    // Any other error (a thrown Error, a rejected promise) is retried with backoff.
    return recognise(tx.description);
  },
};

async function main() {
  const service = await startService(loadConfig(process.env), { heuristic: tableHeuristic });
  const stop = () => void service.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (fileURLToPath(import.meta.url) === path.resolve(process.argv[1] ?? '')) void main();
