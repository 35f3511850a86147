#!/usr/bin/env node
// The `merchant-normalizer` command. In a checkout it runs the TypeScript source through tsx;
// in a build without sources (npm run build, the Docker image) it runs the compiled dist/.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

const source = new URL('./main.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../../dist/src/cli/main.js', import.meta.url).href);
}
