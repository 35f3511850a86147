import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Route } from '../route.js';

const require = createRequire(import.meta.url);
const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));

/** Files of swagger-ui-dist served under /docs/assets (no CDN). */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Merchant normalizer API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="docs"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

const INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#docs',
  deepLinking: true,
  tryItOutEnabled: true,
});
`;

// Swagger UI sets inline styles; everything else comes from this origin.
const CSP =
  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "frame-ancestors 'none'";

/** The API's own description and its docs page; `document` is the OpenAPI document. */
export function docsRoutes(document: () => unknown): Route[] {
  const cache = new Map<string, Buffer>();
  return [
    {
      method: 'get',
      path: '/openapi.json',
      handle: [
        (ctx) => {
          ctx.set('Cache-Control', 'no-cache');
          ctx.body = document();
        },
      ],
      doc: false,
    },
    {
      method: 'get',
      path: '/docs',
      handle: [
        (ctx) => {
          ctx.set('Content-Security-Policy', CSP);
          ctx.type = 'text/html; charset=utf-8';
          ctx.body = PAGE;
        },
      ],
      doc: false,
    },
    {
      method: 'get',
      path: '/docs/init.js',
      handle: [
        (ctx) => {
          ctx.type = 'text/javascript; charset=utf-8';
          ctx.body = INIT;
        },
      ],
      doc: false,
    },
    {
      method: 'get',
      path: '/docs/assets/:file',
      handle: [
        async (ctx, next) => {
          const file = (ctx.params as { file?: string }).file ?? '';
          const type = ASSETS[file];
          if (!type) {
            await next(); // 404 problem
            return;
          }
          let content = cache.get(file);
          if (!content) {
            content = await readFile(path.join(SWAGGER_UI_DIR, file));
            cache.set(file, content);
          }
          ctx.set('Cache-Control', 'public, max-age=86400');
          ctx.type = type;
          ctx.body = content;
        },
      ],
      doc: false,
    },
  ];
}
