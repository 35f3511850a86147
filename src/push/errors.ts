/**
 * What the webhook use-cases refuse, besides "not found" (errors.ts) and a refused URL
 * (ssrf.ts). The HTTP layer maps each to a status (http/problem.ts).
 */

/** The client has as many endpoints as it may. */
export class WebhookLimitError extends Error {
  constructor(readonly limit: number) {
    super(`You have ${limit} webhook endpoints, the most a client may have; delete one first.`);
    this.name = 'WebhookLimitError';
  }
}

/** The client has as many event streams open in this process as it may. */
export class StreamLimitError extends Error {
  constructor(readonly limit: number) {
    super(
      `You have ${limit} event streams open, the most one client may hold ` +
        '(EVENTS_MAX_STREAMS_PER_CLIENT); close one, or follow several batches on one stream ' +
        '(leave out ?batch=).',
    );
    this.name = 'StreamLimitError';
  }
}

/** A redelivery was asked for while an attempt of that delivery is in flight. */
export class DeliveryInFlightError extends Error {
  constructor(readonly deliveryId: string) {
    super(`Delivery ${deliveryId} is being attempted right now; ask again once it has an answer.`);
    this.name = 'DeliveryInFlightError';
  }
}

/** A stream was asked to resume after an event that is not (or no longer) in the client's log. */
export class EventExpiredError extends Error {
  constructor(readonly eventId: string) {
    super(
      `Event ${eventId} is not in your event log (events are kept JOB_RETENTION_DAYS). ` +
        'Reconnect without Last-Event-ID or after to stream from now, and read the current ' +
        'state with GET /jobs.',
    );
    this.name = 'EventExpiredError';
  }
}
