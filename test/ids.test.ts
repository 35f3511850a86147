import { expect } from 'chai';
import { validate, version } from 'uuid';
import { createdAtOf, idGenerator, newId } from '../src/ids.js';

describe('job and batch ids (UUIDv7)', () => {
  it('are lower-case RFC 9562 version 7 UUIDs carrying their creation time', () => {
    const before = Date.now();
    const id = newId();
    expect(validate(id)).to.equal(true);
    expect(version(id)).to.equal(7);
    expect(id).to.equal(id.toLowerCase());
    expect(createdAtOf(id)?.getTime()).to.be.within(before, Date.now());
    const at = idGenerator(() => 1_700_000_000_123);
    expect(createdAtOf(at())?.getTime()).to.equal(1_700_000_000_123);
  });

  it('are distinct and each sorts after the previous one, within one millisecond too', () => {
    const burst = Array.from({ length: 20_000 }, () => newId());
    expect(new Set(burst).size).to.equal(burst.length);
    expect(burst.every((id, i) => i === 0 || id > (burst[i - 1] as string))).to.equal(true);
    // Far more ids than the pool of random bytes holds, all in the same millisecond.
    const t = 1_800_000_000_000;
    const frozen = idGenerator(() => t);
    const same = Array.from({ length: 5000 }, () => frozen());
    expect(same.every((id, i) => i === 0 || id > (same[i - 1] as string))).to.equal(true);
    expect(same.every((id) => createdAtOf(id)?.getTime() === t)).to.equal(true);
  });

  it('keep their order when the clock goes back', () => {
    let now = 1_800_000_005_000;
    const next = idGenerator(() => now);
    const first = next();
    now -= 5000;
    const after = next();
    expect(after > first).to.equal(true);
    expect(createdAtOf(after)?.getTime()).to.equal(1_800_000_005_000);
  });

  it('vary in their random bits', () => {
    const tails = new Set(Array.from({ length: 1000 }, () => newId().slice(-8)));
    expect(tails.size).to.be.greaterThan(990);
  });
});
