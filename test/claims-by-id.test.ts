/**
 * The jsonb object the runner's fenced writes read their claims from (src/db/sql/claims.ts
 * `claimsById`), written out as text: job ids in lower case (as Postgres prints a uuid) to each
 * claim's attempt and result, a result left out when there is none, and a repeated id keeping its
 * last entry, as Postgres's jsonb does.
 */
import { expect } from 'chai';
import { claimsById } from '../src/db/sql/claims.js';
import { freshDatabase } from './support/db.js';

const A = 'A6E9D7B2-1111-4C3B-9D2E-000000000001';
const B = 'a6e9d7b2-1111-4c3b-9d2e-000000000002';

describe('claimsById', () => {
  it('maps each lower-cased job id to its attempt and result', () => {
    const json = claimsById(
      [
        { id: A, attempts: 1 },
        { id: B, attempts: 3 },
      ],
      [{ merchant: 'Netflix "US"', confidence: 0.9 }, undefined],
    );
    expect(JSON.parse(json)).to.deep.equal({
      [A.toLowerCase()]: { attempts: 1, result: { merchant: 'Netflix "US"', confidence: 0.9 } },
      [B]: { attempts: 3 },
    });
  });

  it('is an empty object for no claims, and has no results when none are given', () => {
    expect(claimsById([])).to.equal('{}');
    expect(JSON.parse(claimsById([{ id: B, attempts: 2 }]))).to.deep.equal({
      [B]: { attempts: 2 },
    });
  });

  it('reads in Postgres as jsonb, a repeated id keeping its last entry', async () => {
    const db = await freshDatabase(1);
    try {
      const json = claimsById([
        { id: A, attempts: 1 },
        { id: A.toLowerCase(), attempts: 2 },
      ]);
      const { rows } = await db.raw<{ rows: [{ attempts: number }] }>(
        `SELECT (?::jsonb -> ?::uuid::text ->> 'attempts')::int AS attempts`,
        [json, A],
      );
      expect(rows[0].attempts).to.equal(2);
    } finally {
      await db.destroy();
    }
  });
});
