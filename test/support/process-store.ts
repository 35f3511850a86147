import type { Knex } from 'knex';
import type { Appended } from '../../src/db/sql/events.js';
import { announceEvents } from '../../src/db/sql/events.js';
import { type Store, createStore } from '../../src/db/store.js';
import { EventFeed } from '../../src/jobs/events.js';
import { createLogger } from '../../src/log.js';

/**
 * A store on a pool of the test's own that behaves as another process's: the events its
 * statements append are announced after the commit (EVENTS_CHANNEL), so the service under test
 * hears them as it hears any other process. (The database does not NOTIFY them itself.)
 */
export function announcingStore(
  db: Knex,
  onAppended?: (appended: Appended) => void,
): { store: Store; idle(): Promise<void> } {
  // It does not listen, so hears nobody: it announces all the same.
  const feed = new EventFeed(db, createLogger('silent'), (payload) => announceEvents(db, payload), {
    presenceMs: Infinity,
  });
  const store = createStore(db, {
    onAppended: (appended) => {
      onAppended?.(appended);
      feed.appended(appended);
    },
  });
  return { store, idle: () => feed.idle() };
}
