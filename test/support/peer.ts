import type { Knex } from 'knex';
import pg from 'pg';
import { EVENTS_CHANNEL } from '../../src/db/channels.js';
import { databaseUrl, eventually } from './db.js';

/**
 * A connection that LISTENs on `channels` of `db`'s database as another process of the service
 * would, `heard` called with each notification. Like such a process it says hello on the events
 * channel and waits for an answer, so that the service, which announces nothing while alone
 * (src/jobs/events.ts), announces to it. Close it with `end()`.
 */
export async function listenAsPeer(
  db: Knex,
  channels: readonly string[],
  heard: (channel: string, payload: string) => void,
): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl(db) });
  await client.connect();
  let answered = false;
  client.on('notification', (n) => {
    const payload = n.payload ?? '';
    if (n.channel === EVENTS_CHANNEL && payload.endsWith(':here')) answered = true;
    if (channels.includes(n.channel)) heard(n.channel, payload);
  });
  try {
    for (const channel of new Set([...channels, EVENTS_CHANNEL])) {
      await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    }
    await client.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, 'test-peer:hello']);
    await eventually(() => Promise.resolve(answered), 10_000, 'the service to answer a hello');
  } catch (err) {
    await client.end();
    throw err;
  }
  return client;
}
