/**
 * `GET /events`: the caller's events as Server-Sent Events, for clients without a public
 * endpoint. The body is a stream that koa hands to the socket as it is written (nothing is
 * buffered or compressed); it ends when the client goes away or the service stops.
 */
import { PassThrough } from 'node:stream';
import type { Authenticator } from '../../auth/authenticator.js';
import type { EventType } from '../../db/sql/events.js';
import type { EventStreams } from '../../push/stream.js';
import { authenticate, clientOf } from '../middleware.js';
import { common4xx, problem, queryParameters } from '../openapi.js';
import { HttpProblem, PROBLEM_TYPES } from '../problem.js';
import type { Route } from '../route.js';
import { PARAMETER_RULES } from '../rules.js';
import { parseEventsQuery } from '../validation.js';
import { eventsQuerySchema } from '../webhook-schemas.js';

export interface EventRoutesDeps {
  push: { streams: EventStreams };
  auth: Authenticator;
}

const EXAMPLE = `retry: 2000
: connected

id: 1042
event: job.succeeded
data: {"type":"job.succeeded","timestamp":"2026-04-03T10:00:01.204Z","data":{"id":"9ca1…","status":"succeeded",…}}

: heartbeat
`;

export function eventRoutes(deps: EventRoutesDeps): Route[] {
  const { streams } = deps.push;
  return [
    {
      method: 'get',
      path: '/events',
      handle: [
        authenticate(deps.auth),
        async (ctx) => {
          const query = parseEventsQuery(ctx.query);
          const lastEventId = ctx.get('Last-Event-ID').trim();
          if (lastEventId !== '' && !/^\d{1,19}$/.test(lastEventId)) {
            throw new HttpProblem(
              400,
              PROBLEM_TYPES.invalidParameter,
              'Invalid Last-Event-ID',
              `Last-Event-ID ${PARAMETER_RULES.after}.`,
            );
          }
          const clientId = clientOf(ctx).id;
          // Refused before reading the log too: a client at its limit that keeps reconnecting
          // must not cost a read each time.
          streams.makeRoom(clientId);
          const from = await streams.startingPoint(clientId, lastEventId || query.after);
          streams.makeRoom(clientId); // no await from here to open(): the count cannot go stale
          const out = new PassThrough();
          ctx.status = 200;
          ctx.type = 'text/event-stream';
          ctx.set('Cache-Control', 'no-cache, no-transform');
          ctx.set('X-Accel-Buffering', 'no');
          // koa-compress (if ever mounted) would buffer the stream.
          (ctx as { compress?: boolean }).compress = false;
          ctx.req.socket.setNoDelay(true);
          ctx.req.socket.setTimeout(0);
          ctx.body = out;
          streams.open(
            {
              clientId,
              types: query.types?.split(',') as EventType[] | undefined,
              batchId: query.batch?.toLowerCase(),
            },
            from,
            out,
            () => ctx.req.socket.destroy(),
          );
        },
      ],
      doc: {
        operationId: 'streamEvents',
        tags: ['Events'],
        summary: 'Your events as they happen (Server-Sent Events)',
        description:
          'A `text/event-stream` of your events: `id:` is the event id, `event:` its type, ' +
          '`data:` an `Event` (the same JSON a webhook receives). Reconnect with ' +
          '`Last-Event-ID` (EventSource does) or `?after=` to get exactly the events you missed, ' +
          'in order, with none repeated (within JOB_RETENTION_DAYS). Comment lines ' +
          '(`: heartbeat`) come every EVENTS_HEARTBEAT_MS while nothing else does.',
        parameters: [
          {
            name: 'Last-Event-ID',
            in: 'header',
            required: false,
            description: 'Resume after this event id (sent by EventSource on reconnect).',
            schema: { type: 'string', pattern: '^[0-9]{1,19}$' },
          },
          ...queryParameters(eventsQuerySchema),
        ],
        responses: {
          '200': {
            description: "The stream; each message's `data` is a `#/components/schemas/Event`.",
            content: { 'text/event-stream': { schema: { type: 'string' }, example: EXAMPLE } },
          },
          '410': problem(
            'The Last-Event-ID / after event is not in your log (purged, or not yours): ' +
              'reconnect without it and read current state with GET /jobs.',
          ),
          '429': problem(
            'You hold as many streams as one client may (EVENTS_MAX_STREAMS_PER_CLIENT, 100 ' +
              'by default, per process; `/problems/too-many-streams`): close one first. Also ' +
              'too many failed authentications from your address. `Retry-After` says when to ' +
              'try again.',
            'Retry-After',
          ),
          ...common4xx,
        },
      },
    },
  ];
}
