/**
 * CPU-bound heuristics (HEURISTIC_CPU_MS) run on worker threads: the event loop, and so the HTTP
 * API, stays responsive while they burn.
 */
import fs from 'node:fs';
import os from 'node:os';
import { expect } from 'chai';
import { loadConfig } from '../src/config.js';
import { CpuPool, canLowerPriority } from '../src/heuristic/cpu-pool.js';
import { createHeuristic } from '../src/heuristic/factory.js';
import { createMockHeuristic } from '../src/heuristic/mock.js';
import { createLogger } from '../src/log.js';
import { eventually } from './support/db.js';
import { type Harness, startHarness } from './support/harness.js';
import { tx } from './support/heuristics.js';

/** Largest gap between event-loop turns while `work` runs (a 5 ms timer that should tick). */
async function maxLoopGap<T>(work: () => Promise<T>): Promise<{ gapMs: number; value: T }> {
  let last = performance.now();
  let gapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
  }, 5);
  try {
    const value = await work();
    // A stall that lasts until the work is done (a burn before its first await) has no tick
    // after it: count it too.
    gapMs = Math.max(gapMs, performance.now() - last);
    return { gapMs, value };
  } finally {
    clearInterval(timer);
  }
}

/** The nice value of each thread of this process (Linux: each thread has its own). */
function threadNiceValues(): number[] {
  const dir = `/proc/${process.pid}/task`;
  return fs.readdirSync(dir).flatMap((tid) => {
    try {
      const stat = fs.readFileSync(`${dir}/${tid}/stat`, 'utf8');
      // proc_pid_stat(5): the 19th field, counted after the command name's closing parenthesis.
      return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
    } catch {
      return []; // the thread ended meanwhile
    }
  });
}

/**
 * One burn of the CPU-bound part. A burn on the event loop would stall it for a whole burn (the
 * burn is timed by the clock, however little CPU the thread gets), so the loop may stall for at
 * most half of one: far below what that bug causes, and far above what a machine with both cores
 * busy does to a busy loop (stalls up to ~400 ms were measured with two `yes` and other suites
 * running; 150 ms bounds with 300-400 ms burns flaked there).
 */
const BURN_MS = 1000;
const MAX_STALL_MS = BURN_MS / 2;

describe('CPU-bound heuristics on worker threads', function () {
  this.timeout(30_000);
  let pool: CpuPool | undefined;
  let h: Harness | undefined;
  /** The mock heuristic burning `cpuMs` per call on a pool of one thread. */
  const burning = (cpuMs: number) => {
    pool = new CpuPool(1);
    return createMockHeuristic({
      delayMs: { min: 0, max: 0 },
      failureRate: 0,
      cpuMs,
      cpuPool: pool,
    });
  };
  afterEach(async () => {
    await h?.stop();
    await pool?.close();
    h = undefined;
    pool = undefined;
  });

  it('burns HEURISTIC_CPU_MS off the event loop and still answers correctly', async () => {
    const heuristic = burning(BURN_MS);
    const signal = new AbortController().signal;
    const started = performance.now();
    const { gapMs, value } = await maxLoopGap(() =>
      Promise.all([
        heuristic.match(tx('Payment Netflix APRIL***'), signal),
        heuristic.match(tx('SQ *BLUE BOTTLE COFFEE DENVER CO'), signal),
      ]),
    );
    expect(value).to.deep.equal([
      { merchant: { name: 'Netflix', id: 'netflix' }, intermediaries: [] },
      {
        merchant: { name: 'Blue Bottle Coffee', id: 'blue-bottle-coffee' },
        intermediaries: [{ id: 'square', name: 'Square', kind: 'processor' }],
      },
    ]);
    // One thread: the two burns ran one after the other, while the loop kept ticking.
    expect(performance.now() - started).to.be.at.least(2 * BURN_MS - 20);
    expect(gapMs, 'longest event-loop stall').to.be.below(MAX_STALL_MS);
  });

  it('stops a burning attempt as soon as its signal aborts', async () => {
    const heuristic = burning(10_000);
    const controller = new AbortController();
    const started = performance.now();
    const attempt = heuristic.match(tx('Netflix'), controller.signal).catch((e: Error) => e.name);
    setTimeout(() => controller.abort(new Error('timed out')), 200);
    expect(await attempt).to.equal('AbortError');
    expect(performance.now() - started).to.be.below(2000);
  });

  it('runs its threads at HEURISTIC_THREADS_NICE below the event loop', async function () {
    // Threads start at the priority of the thread that starts them, then lower their own.
    if (process.platform !== 'linux') this.skip(); // asked for on Linux only (cpu-pool.ts)
    const base = os.getPriority();
    if (base + 7 > 19) this.skip(); // already too low a priority to go 7 lower
    const atWanted = () => threadNiceValues().filter((nice) => nice === base + 7).length;
    const before = atWanted();
    const config = loadConfig({
      HEURISTIC_DELAY_MS: '0',
      HEURISTIC_CPU_MS: '1',
      HEURISTIC_THREADS_NICE: '7',
    });
    const runtime = createHeuristic(config, createLogger('silent'));
    try {
      await runtime.heuristic.match(tx('Payment Netflix APRIL***'), new AbortController().signal);
      await eventually(async () => atWanted() > before, 10_000, `a thread at nice ${base + 7}`);
      expect(os.getPriority(), "the event loop's priority is left alone").to.equal(base);
    } finally {
      await runtime.close();
    }
  });

  it('knows whether the threads can lower their priority: with @napi-rs/nice, as installed here', async () => {
    // The lock file installs it (an optional dependency of piscina); the Docker image keeps it.
    expect(await canLowerPriority()).to.equal(true);
    expect(await canLowerPriority('@napi-rs/nice-not-installed')).to.equal(false);
  });

  it('keeps GET answering while the runner is busy with CPU-heavy attempts', async () => {
    const heuristic = burning(BURN_MS);
    h = await startHarness({ heuristic });
    const ids: string[] = [];
    for (const d of ['NETFLIX.COM', 'SPOTIFY USA', 'UBER TRIP', 'LYFT RIDE']) {
      ids.push((await h.http.post('/normalize_merchant').send(tx(d)).expect(202)).body.id);
    }
    const { gapMs } = await maxLoopGap(async () => {
      for (let i = 0; i < 20; i++) await h!.http.get(`/jobs/${ids[0]}`).expect(200);
      await eventually(async () => {
        const res = await h!.http.get('/jobs?status=succeeded').expect(200);
        return res.body.jobs.length === 4;
      }, 20_000);
    });
    expect(gapMs, 'longest event-loop stall while 4 burns ran').to.be.below(MAX_STALL_MS);
  });
});
