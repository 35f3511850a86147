import { expect } from 'chai';
import { validate, version } from 'uuid';
import { createdAtOf, newId } from '../src/ids.js';

describe('job and batch ids (UUIDv7, from the uuid package)', () => {
  it('are lower-case RFC 9562 version 7 UUIDs carrying their creation time', () => {
    const before = Date.now();
    const id = newId();
    expect(validate(id)).to.equal(true);
    expect(version(id)).to.equal(7);
    expect(id).to.equal(id.toLowerCase());
    expect(createdAtOf(id)?.getTime()).to.be.within(before, Date.now());
    expect(createdAtOf('6f1c0c52-8a4d-4a7e-9d2c-0b1e2f3a4b5c'), 'a v4 id').to.equal(undefined);
  });

  it('are distinct and each sorts after the previous one, within one millisecond too', () => {
    const burst = Array.from({ length: 20_000 }, () => newId());
    expect(new Set(burst).size).to.equal(burst.length);
    expect(burst.every((id, i) => i === 0 || id > (burst[i - 1] as string))).to.equal(true);
    const perMs = new Map<number, number>();
    for (const id of burst) {
      const ms = createdAtOf(id)!.getTime();
      perMs.set(ms, (perMs.get(ms) ?? 0) + 1);
    }
    expect(Math.max(...perMs.values()), 'many ids shared a millisecond').to.be.greaterThan(1);
  });

  it('vary in their random bits, across refills of the random pool (256 ids each)', () => {
    const tails = new Set(Array.from({ length: 1000 }, () => newId().slice(-8)));
    expect(tails.size).to.be.greaterThan(990);
  });
});
