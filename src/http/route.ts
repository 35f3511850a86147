/**
 * A route: method, path, the middleware that answers it, and its OpenAPI operation. The router
 * is mounted from the same list the OpenAPI document's `paths` are built from, so a route
 * cannot be served without being described (or explicitly left out of the document).
 */
import Router from '@koa/router';
import type { Middleware } from 'koa';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** An OpenAPI 3.1 operation object. */
export type Operation = Record<string, unknown>;

export interface Route {
  method: Method;
  /** Koa-style path: `/jobs/:id`. */
  path: string;
  /** The operation in the OpenAPI document; `false` for what is not part of the API (assets). */
  doc: Operation | false;
  /** Middleware in order; the last one answers. */
  handle: Middleware[];
}

/** A router serving `routes`. */
export function mount(routes: readonly Route[]): Router {
  const router = new Router();
  for (const route of routes) {
    const [first, ...rest] = route.handle;
    if (!first) throw new Error(`route ${route.method} ${route.path} has no handler`);
    router.register(route.path, [route.method.toUpperCase()], [first, ...rest]);
  }
  return router;
}

/** `/jobs/:id` as OpenAPI writes it: `/jobs/{id}`. */
export const openApiPath = (path: string) => path.replace(/:(\w+)/g, '{$1}');

/** The OpenAPI `paths` object of the documented routes. */
export function openApiPaths(routes: readonly Route[]): Record<string, Record<string, Operation>> {
  const paths: Record<string, Record<string, Operation>> = {};
  for (const route of routes) {
    if (route.doc === false) continue;
    const path = openApiPath(route.path);
    paths[path] ??= {};
    paths[path][route.method] = route.doc;
  }
  return paths;
}
