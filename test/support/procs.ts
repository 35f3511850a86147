import fs from 'node:fs/promises';

/**
 * Pids of live processes whose `/proc/<pid>/<file>` (`cmdline`: its command line, `environ`: its
 * environment) holds `text`. Linux only.
 */
export async function processesWhose(file: 'cmdline' | 'environ', text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const content = await fs.readFile(`/proc/${entry}/${file}`, 'latin1').catch(() => '');
    if (content.includes(text)) pids.push(Number(entry));
  }
  return pids;
}
