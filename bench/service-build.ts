/**
 * The service as the Docker image runs it: compiled by tsc (`npm run build`) and started with
 * plain `node dist/src/main.js`, not through tsx as `npm start` does. tsx's output costs the
 * server 2-5 % more CPU per single submit (measured in three interleaved pairs on 2026-11-25,
 * docs/performance-log.md, "The runner's share of a single submit, and where it could go"): among
 * other things it wraps each function it creates in a call that defines the function's name.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This checkout. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The service's entry point in a compiled checkout. */
const SERVICE_ENTRY = 'dist/src/main.js';

/** A process to start with `node`: its arguments, the script last, and its directory. */
export interface NodeCommand {
  args: string[];
  cwd?: string;
}

/** One of the bench's own scripts, run through tsx. */
export const benchScript = (file: string): NodeCommand => ({ args: ['--import', 'tsx', file] });

/** The compiled service of checkout `dir` (this one by default), built first. */
export async function serviceCommand(dir: string = ROOT): Promise<NodeCommand> {
  await buildService(dir);
  return { args: [SERVICE_ENTRY], cwd: dir };
}

const builds = new Map<string, Promise<void>>();

/** Compiles the service of checkout `dir` (once per bench process): its dist is then current. */
function buildService(dir: string): Promise<void> {
  let build = builds.get(dir);
  if (!build) {
    build = (async () => {
      console.log(`bench: compiling the service in ${dir} (npm run build)`);
      const npm = spawn('npm', ['run', '-s', 'build'], { cwd: dir, stdio: 'inherit' });
      const [code] = (await once(npm, 'exit')) as [number | null];
      if (code !== 0) throw new Error(`npm run build in ${dir} exited with ${code}`);
    })();
    builds.set(dir, build);
  }
  return build;
}
