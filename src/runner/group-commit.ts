/**
 * Group commit: callers submit one item each and get its own result back, while the items are
 * written together. A write starts as soon as an item arrives and none is in progress; items
 * arriving during a write form the next one. Idle, an item is written at once (no added delay);
 * under load, one statement carries as many items as arrived while the previous one ran.
 */
export class GroupCommit<I, O> {
  private queue: { item: I; resolve: (out: O) => void; reject: (err: unknown) => void }[] = [];
  private writing = false;

  constructor(
    /** Writes `items`; returns one result per item, in order. */
    private readonly write: (items: I[]) => Promise<O[]>,
    private readonly maxItems = 500,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxItems);
        try {
          const out = await this.write(group.map((g) => g.item));
          group.forEach((g, i) => g.resolve(out[i] as O));
        } catch (err) {
          for (const g of group) g.reject(err);
        }
      }
    } finally {
      this.writing = false;
    }
  }
}
