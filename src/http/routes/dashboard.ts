/**
 * The dashboard at `/`: a static page (public/dashboard/) whose script reads the public API
 * with the key its user pastes (kept in sessionStorage). It serves no data itself, so it needs
 * no key to load, and its strict CSP allows only its own script, style and API calls.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../version.js';
import type { Route } from '../route.js';

const DIR = path.join(PACKAGE_ROOT, 'public', 'dashboard');

/** The files it serves (nothing else under DIR is reachable), with their types. */
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

/** No inline script or style, no other origin: the page's own files and the API only. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function dashboardRoutes(): Route[] {
  const cache = new Map<string, Buffer>();

  const serve = async (file: string) => {
    let content = cache.get(file);
    if (!content) {
      content = await readFile(path.join(DIR, file));
      cache.set(file, content);
    }
    return content;
  };

  return [
    {
      method: 'get',
      path: '/',
      handle: [
        async (ctx) => {
          ctx.set('Content-Security-Policy', DASHBOARD_CSP);
          ctx.set('Cache-Control', 'no-cache');
          ctx.type = FILES['index.html'] ?? 'text/html';
          ctx.body = await serve('index.html');
        },
      ],
      doc: false,
    },
    {
      method: 'get',
      path: '/dashboard/:file',
      handle: [
        async (ctx, next) => {
          const file = (ctx.params as { file?: string }).file ?? '';
          const type = FILES[file];
          if (!type || file === 'index.html') {
            await next(); // 404 problem
            return;
          }
          // Revalidated on every load, so a new version of the page never meets an old script.
          ctx.set('Cache-Control', 'no-cache');
          ctx.type = type;
          ctx.body = await serve(file);
        },
      ],
      doc: false,
    },
  ];
}
