/**
 * `merchant-normalizer webhooks …` (endpoints, secrets, the delivery log) and
 * `merchant-normalizer events` (the event stream as JSON lines). These talk to the HTTP API with
 * the caller's key; every answer is printed as JSON on stdout.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { MerchantClient } from '../client/client.js';
import { streamEvents } from '../client/events.js';
import { InputError } from './input.js';

const EVENT_TYPES = ['job.succeeded', 'job.failed', 'job.canceled', 'batch.completed'];

function eventTypes(value: string): string[] {
  const types = value.split(',').map((t) => t.trim());
  const unknown = types.filter((t) => !EVENT_TYPES.includes(t));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(
      `unknown event type ${unknown.join(', ')} (known: ${EVENT_TYPES.join(', ')})`,
    );
  }
  return types;
}

function count(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new InvalidArgumentError('must be a whole number from 1');
  return Number(value);
}

const print = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

export interface CliContext {
  client(): MerchantClient;
  url(): string;
  apiKey(): string | undefined;
}

export function addWebhookCommands(cli: Command, ctx: CliContext): void {
  const webhooks = cli
    .command('webhooks')
    .description('Webhook endpoints: events pushed to your URL, signed per Standard Webhooks.');
  webhooks
    .command('create')
    .description('Register an endpoint; prints it with its signing secret (shown only now).')
    .argument('<url>', 'the https URL to POST events to')
    .option(
      '--events <types>',
      `comma-separated event types (default: all of ${EVENT_TYPES.join(', ')})`,
      eventTypes,
    )
    .option('--description <text>', 'a note about the endpoint')
    .action(async (url: string, o: { events?: string[]; description?: string }) => {
      print(await ctx.client().createWebhook({ url, ...o }));
    });
  webhooks
    .command('list')
    .description('Your endpoints and their status.')
    .action(async () => print(await ctx.client().listWebhooks()));
  webhooks
    .command('show')
    .description('One endpoint and its status.')
    .argument('<id>', 'the endpoint id')
    .action(async (id: string) => print(await ctx.client().getWebhook(id)));
  webhooks
    .command('update')
    .description('Change an endpoint; --enable also clears a disabled state (410, failing).')
    .argument('<id>', 'the endpoint id')
    .option('--new-url <url>', 'send to this URL instead')
    .option('--events <types>', 'comma-separated event types', eventTypes)
    .option('--description <text>', 'new note')
    .option('--enable', 'send to it again')
    .option('--disable', 'stop sending to it (deliveries wait)')
    .action(
      async (
        id: string,
        o: {
          newUrl?: string;
          events?: string[];
          description?: string;
          enable?: boolean;
          disable?: boolean;
        },
      ) => {
        if (o.enable && o.disable)
          throw new InputError('--enable and --disable exclude each other');
        const enabled = o.enable ? true : o.disable ? false : undefined;
        print(
          await ctx.client().updateWebhook(id, {
            url: o.newUrl,
            events: o.events,
            description: o.description,
            enabled,
          }),
        );
      },
    );
  webhooks
    .command('delete')
    .description('Delete an endpoint and its delivery log.')
    .argument('<id>', 'the endpoint id')
    .action(async (id: string) => {
      await ctx.client().deleteWebhook(id);
      process.stderr.write(`deleted webhook ${id}\n`);
    });
  webhooks
    .command('rotate-secret')
    .description('A new signing secret (printed); the old one keeps signing beside it for 24 h.')
    .argument('<id>', 'the endpoint id')
    .action(async (id: string) => print(await ctx.client().rotateWebhookSecret(id)));
  webhooks
    .command('deliveries')
    .description("An endpoint's delivery log, newest first.")
    .argument('<id>', 'the endpoint id')
    .option('--limit <n>', 'entries (1..1000)', count, 20)
    .action(async (id: string, o: { limit: number }) => {
      print((await ctx.client().webhookDeliveries(id, { limit: o.limit })).deliveries);
    });
  webhooks
    .command('redeliver')
    .description('Send a delivery again now (same webhook-id).')
    .argument('<id>', 'the endpoint id')
    .argument('<delivery-id>', 'the delivery id (from "deliveries")')
    .action(async (id: string, delivery: string) =>
      print(await ctx.client().redeliver(id, delivery)),
    );

  cli
    .command('events')
    .description(
      'Print your events as they happen, one JSON line each ({id, type, timestamp, data}), ' +
        'from GET /events; reconnects with Last-Event-ID, so nothing is missed or repeated.',
    )
    .option('--after <id>', 'start after this event id (default: from now)')
    .option('--types <types>', 'only these comma-separated event types', eventTypes)
    .option('--batch <id>', "only one batch's events")
    .option('--count <n>', 'exit after this many events', count)
    .action(async (o: { after?: string; types?: string[]; batch?: string; count?: number }) => {
      const stop = new AbortController();
      let seen = 0;
      for await (const event of streamEvents({
        baseUrl: ctx.url(),
        apiKey: ctx.apiKey(),
        after: o.after,
        types: o.types,
        batch: o.batch,
        signal: stop.signal,
        onReconnect: ({ delayMs, reason }) =>
          process.stderr.write(`stream interrupted (${reason}); reconnecting in ${delayMs} ms\n`),
      })) {
        process.stdout.write(`${JSON.stringify({ id: event.id, ...event.message })}\n`);
        if (o.count !== undefined && ++seen >= o.count) {
          stop.abort();
          break;
        }
      }
    });
}
