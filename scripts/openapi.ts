/**
 * Writes the OpenAPI document as `GET /openapi.json` serves it with every feature on (metrics,
 * webhooks, the event stream) to the file named, or to stdout: `npm run openapi` writes
 * openapi.json, which `npm run lint` checks with Redocly (redocly.yaml). No database and no
 * server: the routes are built for their documentation and never called.
 */
import { writeFile } from 'node:fs/promises';
import { type AppDeps, appRoutes } from '../src/http/app.js';
import { openApiDocument } from '../src/http/openapi.js';
import { VERSION } from '../src/version.js';

// Only what building the routes reads; their handlers, which use the rest, never run here.
const deps = { push: {}, metrics: {} } as unknown as AppDeps;
const text = `${JSON.stringify(openApiDocument(VERSION, appRoutes(deps)), null, 2)}\n`;
const [file] = process.argv.slice(2);
if (file) await writeFile(file, text);
else process.stdout.write(text);
