import { expect } from 'chai';
import type { Knex } from 'knex';
import { freshDatabase } from './support/db.js';

/**
 * `timestamptz` values are read by postgres-date 2 (src/db/knex.ts, `pgTypes`), not the parser pg
 * comes with: every value Postgres can print must come back as the same instant, whatever the
 * session's time zone makes it print (offsets in hours, minutes and seconds, BC, infinity).
 */
describe('timestamps read from Postgres (src/db/knex.ts)', () => {
  let db: Knex;
  beforeEach(async () => {
    db = await freshDatabase(1); // one connection: SET TIME ZONE applies to every read below
  });
  afterEach(async () => {
    await db.destroy();
  });

  const values = [
    '2026-11-24 02:14:05.123456+00',
    '2026-11-24 02:14:05+00',
    '2026-11-24 02:14:05.5+00',
    '1969-12-31 23:59:59.999999+00',
    '1890-01-01 00:00:00+00', // local mean time in Europe/Amsterdam: +00:19:32
    '0050-06-01 12:00:00+00', // a year Date.UTC would read as 1950
    '0099-06-01 12:00:00+00 BC',
  ];
  // UTC, +05:30, -03:30 (-02:30 in summer), and a zone with historical offsets in seconds.
  const zones = ['UTC', 'Asia/Kolkata', 'America/St_Johns', 'Europe/Amsterdam'];

  for (const zone of zones) {
    it(`reads every value as the instant Postgres holds (TimeZone ${zone})`, async () => {
      await db.raw(`SET TIME ZONE '${zone}'`);
      for (const value of [...values, 'now']) {
        const { rows } = await db.raw<{
          rows: [{ t: Date; printed: string; ms: string }];
        }>(
          `SELECT t, t::text AS printed, floor(extract(epoch FROM t) * 1000)::text AS ms
           FROM (SELECT ?::timestamptz AS t) v`,
          [value],
        );
        const [row] = rows;
        expect(row.t, row.printed).to.be.instanceOf(Date);
        expect(row.t.getTime(), `${value} printed as ${row.printed}`).to.equal(Number(row.ms));
      }
    });
  }

  it('reads infinity and -infinity as numbers, and NULL as null', async () => {
    const { rows } = await db.raw<{ rows: [{ a: number; b: number; c: null }] }>(
      `SELECT 'infinity'::timestamptz AS a, '-infinity'::timestamptz AS b, NULL::timestamptz AS c`,
    );
    expect(rows[0]).to.deep.equal({ a: Infinity, b: -Infinity, c: null });
  });
});
