/**
 * Liveness and readiness, for orchestrators and load balancers; no API key needed.
 */
import type { MigrationState } from '../../db/knex.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';
import { json, open, problem } from '../openapi.js';
import type { Route } from '../route.js';

export interface HealthDeps {
  /** True once shutdown has begun: readiness fails so load balancers stop sending work. */
  isDraining: () => boolean;
  /** Which migrations are missing or unknown; rejects when the database does not answer. */
  migrationState: () => Promise<MigrationState>;
}

/** `/readyz` answers within this, even when the database does not (load balancers give up). */
export const READINESS_TIMEOUT_MS = 1500;

export function healthRoutes(deps: HealthDeps): Route[] {
  const unavailable = (detail: string) =>
    new HttpProblem(503, PROBLEM_TYPES.unavailable, 'Not Ready', detail, undefined, {
      'Retry-After': '5',
    });
  // One check at a time: probes arriving while one runs share its answer, so a stalled
  // database does not collect a pool connection per probe.
  let checking: Promise<MigrationState> | undefined;
  const check = () => {
    checking ??= deps.migrationState().finally(() => (checking = undefined));
    return checking;
  };
  return [
    {
      // Liveness: the process answers. No dependencies checked, so a database outage does not
      // get every replica restarted.
      method: 'get',
      path: '/healthz',
      handle: [
        (ctx) => {
          ctx.body = { status: 'ok' };
        },
      ],
      doc: {
        ...open,
        operationId: 'liveness',
        tags: ['Operations'],
        summary: 'Liveness: the process answers',
        description:
          'For restarting a hung process: checks nothing else, so a database outage does not ' +
          'get every replica restarted. No API key.',
        responses: {
          '200': {
            description: 'Alive.',
            content: json({
              type: 'object',
              required: ['status'],
              properties: { status: { type: 'string', const: 'ok' } },
            }),
          },
        },
      },
    },
    {
      // Readiness: the database answers and every migration this build knows is applied (newer
      // ones it does not know are reported, not refused).
      method: 'get',
      path: '/readyz',
      handle: [
        async (ctx) => {
          if (deps.isDraining()) throw unavailable('Shutting down.');
          let state: MigrationState;
          let timer: NodeJS.Timeout | undefined;
          const timedOut = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`)),
              READINESS_TIMEOUT_MS,
            );
          });
          try {
            state = await Promise.race([check(), timedOut]);
          } catch {
            throw unavailable('The database is unreachable (or did not answer in time).');
          } finally {
            clearTimeout(timer);
          }
          if (state.missing.length > 0) throw unavailable('Database migrations are not applied.');
          // Newer migrations than this version knows: a rollback or a deploy in progress.
          // Ready (all this version needs is there), and said so.
          ctx.body =
            state.unknown.length === 0
              ? { status: 'ready', checks: { database: 'ok', migrations: 'ok' } }
              : {
                  status: 'ready',
                  checks: { database: 'ok', migrations: 'newer' },
                  unknown_migrations: state.unknown,
                };
        },
      ],
      doc: {
        ...open,
        operationId: 'readiness',
        tags: ['Operations'],
        summary: 'Readiness: database reachable, migrations applied',
        description:
          'For load balancers: answers within 2 s. `checks.migrations` is `newer` (with ' +
          '`unknown_migrations`) when a newer version has migrated the database further: still ' +
          'ready. No API key.',
        responses: {
          '200': {
            description: 'Ready.',
            content: json({
              type: 'object',
              required: ['status', 'checks'],
              properties: {
                status: { type: 'string', const: 'ready' },
                checks: {
                  type: 'object',
                  properties: {
                    database: { type: 'string', const: 'ok' },
                    migrations: { type: 'string', enum: ['ok', 'newer'] },
                  },
                },
                unknown_migrations: { type: 'array', items: { type: 'string' } },
              },
            }),
          },
          '503': problem(
            'Not ready: shutting down, database unreachable or not migrated.',
            'Retry-After',
          ),
        },
      },
    },
  ];
}
