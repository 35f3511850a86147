/**
 * What a pushed event says, the same for a webhook body and an event-stream message:
 * `{"type", "timestamp", "data"}`, where `data` is the job or batch resource exactly as
 * `GET /jobs/{id}` or `GET /batches/{id}` returns it (null if it was purged meanwhile) and
 * `timestamp` is when the event was appended.
 */
import type { Knex } from 'knex';
import { getBatch } from '../db/sql/batches.js';
import type { EventRow, EventType } from '../db/sql/events.js';
import { getJobs } from '../db/sql/jobs.js';
import { type BatchResource, type JobResource, batchResource, jobResource } from '../http/views.js';

export interface EventMessage {
  type: EventType;
  timestamp: string;
  data: JobResource | BatchResource | null;
}

/** Each event's message as JSON text, by event id (one read of the jobs, one per batch). */
export async function messagesOf(
  db: Knex,
  events: readonly EventRow[],
): Promise<Map<string, string>> {
  const jobIds = [...new Set(events.flatMap((e) => (e.job_id ? [e.job_id] : [])))];
  const batchIds = [
    ...new Set(events.flatMap((e) => (e.job_id === null && e.batch_id ? [e.batch_id] : []))),
  ];
  const jobs = new Map((await getJobs(db, jobIds)).map((row) => [row.id, jobResource(row)]));
  const batches = new Map<string, BatchResource>();
  for (const id of batchIds) {
    const row = await getBatch(db, id, null);
    if (row) batches.set(id, batchResource(row));
  }
  const messages = new Map<string, string>();
  for (const event of events) {
    const data = event.job_id
      ? jobs.get(event.job_id)
      : event.batch_id
        ? batches.get(event.batch_id)
        : undefined;
    const message: EventMessage = {
      type: event.type,
      timestamp: event.created_at.toISOString(),
      data: data ?? null,
    };
    messages.set(event.id, JSON.stringify(message));
  }
  return messages;
}
