/**
 * Summarizes a `node --cpu-prof` profile: self time by module (a package under node_modules, a
 * file of this repository, node's internals) and by function, as shares of all samples.
 *
 *   node --import tsx bench/cpuprofile-summary.ts /tmp/prof/CPU.….cpuprofile [top=25]
 */
import fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error('usage: cpuprofile-summary.ts FILE [top]');
const top = Number(topArg ?? 25);
const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

/** Where a frame's code lives: a package, a file of the repository, or node itself. */
function moduleOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1]) return pkg[1];
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const own = /\/(src|bench|db)\/(.*)$/.exec(url);
  return own ? `${own[1]}/${own[2]}` : url;
}

/**
 * With FROM=name: only the samples from the first one under a function `name` on (start-up left
 * out), until UNTIL_MS later when given.
 */
const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
const under = (id: number, name: string): boolean => {
  for (let p: number | undefined = id; p !== undefined; p = parentOf.get(p)) {
    if (byId.get(p)?.callFrame.functionName === name) return true;
  }
  return false;
};
const from = process.env.FROM;
const untilMs = Number(process.env.UNTIL_MS ?? Infinity);
const selfUs = new Map<number, number>();
let totalUs = 0;
let startedAt: number | undefined = from ? undefined : 0;
let at = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  at += dt;
  if (startedAt === undefined && from && under(id, from)) startedAt = at;
  if (startedAt === undefined || at - startedAt > untilMs * 1000) return;
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  totalUs += dt;
});

const modules = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id);
  if (!node) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const module = moduleOf(url, functionName);
  modules.set(module, (modules.get(module) ?? 0) + us);
  const fn = `${functionName || '(anonymous)'} ${module}:${lineNumber + 1}`;
  functions.set(fn, (functions.get(fn) ?? 0) + us);
}

const pct = (us: number) => `${((us / totalUs) * 100).toFixed(1).padStart(5)} %`;
const print = (title: string, entries: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [name, us] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${pct(us)} ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
};
console.log(`${file}: ${(totalUs / 1e6).toFixed(1)} s of samples`);
print('self time by module', modules);
print('self time by function', functions);

/** With CALLERS=name: the stacks (innermost first, 6 frames) under which `name` spent self time. */
const callersOf = process.env.CALLERS;
if (callersOf) {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stacks = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node?.callFrame.functionName !== callersOf) continue;
    const frames: string[] = [];
    for (
      let p = parent.get(id);
      p !== undefined && frames.length < Number(process.env.DEPTH ?? 6);
      p = parent.get(p)
    ) {
      const f = byId.get(p)?.callFrame;
      if (f) frames.push(`${f.functionName || '(anonymous)'}@${moduleOf(f.url, f.functionName)}`);
    }
    const stack = frames.join(' < ');
    stacks.set(stack, (stacks.get(stack) ?? 0) + us);
  }
  print(`callers of ${callersOf}`, stacks);
}

/**
 * With INCLUSIVE=1: time by function including what it calls (each sample counted once per
 * function however deep the recursion), leaving out samples whose own frame is in EXCLUDE
 * (comma-separated function names, e.g. `writev,(idle)`).
 */
if (process.env.INCLUSIVE) {
  const exclude = new Set((process.env.EXCLUDE ?? '').split(',').filter(Boolean));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  let counted = 0;
  for (const [id, us] of selfUs) {
    const own = byId.get(id);
    if (!own || exclude.has(own.callFrame.functionName)) continue;
    counted += us;
    const seen = new Set<string>();
    for (let p: number | undefined = id; p !== undefined; p = parent.get(p)) {
      const f = byId.get(p)?.callFrame;
      if (!f) continue;
      const fn = `${f.functionName || '(anonymous)'} ${moduleOf(f.url, f.functionName)}:${f.lineNumber + 1}`;
      if (seen.has(fn)) continue;
      seen.add(fn);
      inclusive.set(fn, (inclusive.get(fn) ?? 0) + us);
    }
  }
  console.log(`\n${(counted / 1000).toFixed(0)} ms of samples outside ${[...exclude].join(', ')}`);
  print('inclusive time by function', inclusive);
}

/** With CHILDREN=name: the time under `name`, by the functions it calls directly (inclusive). */
const childrenOf = process.env.CHILDREN;
if (childrenOf) {
  const exclude = new Set((process.env.EXCLUDE ?? '').split(',').filter(Boolean));
  const subtree = (id: number): number => {
    const n = byId.get(id);
    if (!n) return 0;
    const own = exclude.has(n.callFrame.functionName) ? 0 : (selfUs.get(id) ?? 0);
    return own + (n.children ?? []).reduce((t, c) => t + subtree(c), 0);
  };
  const callees = new Map<string, number>();
  for (const n of profile.nodes) {
    if (n.callFrame.functionName !== childrenOf) continue;
    if (!exclude.has(childrenOf))
      callees.set('(self)', (callees.get('(self)') ?? 0) + (selfUs.get(n.id) ?? 0));
    for (const c of n.children ?? []) {
      const f = byId.get(c)?.callFrame;
      if (!f) continue;
      const fn = `${f.functionName || '(anonymous)'} ${moduleOf(f.url, f.functionName)}:${f.lineNumber + 1}`;
      callees.set(fn, (callees.get(fn) ?? 0) + subtree(c));
    }
  }
  print(`called by ${childrenOf}`, callees);
}
