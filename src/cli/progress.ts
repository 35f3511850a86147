/**
 * Progress output for long runs: a redrawn bar (done/total, rate, ETA) on a terminal, plain
 * lines every few seconds otherwise (CI logs, redirected stderr).
 */
export type ProgressMode = 'bar' | 'lines' | 'none';

export class Progress {
  private startedAt = 0;
  private doneAtStart = 0;
  private done = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly total: number,
    private readonly mode: ProgressMode,
    private readonly out: NodeJS.WritableStream,
    private readonly intervalMs = 5000,
  ) {}

  /** A message that should not be overwritten by the bar. */
  note(text: string): void {
    if (this.mode === 'none') return;
    if (this.mode === 'bar' && this.drawn) this.out.write('\r\x1b[K');
    this.out.write(`${text}\n`);
    if (this.mode === 'bar' && this.drawn) this.draw();
  }

  update(done: number): void {
    if (this.startedAt === 0) {
      this.startedAt = Date.now();
      this.doneAtStart = done;
    }
    const changed = done !== this.done;
    this.done = done;
    const now = Date.now();
    if (this.mode === 'bar' && (now - this.lastDraw >= 100 || done === this.total)) {
      this.draw();
    } else if (
      this.mode === 'lines' &&
      ((changed && done === this.total) || now - this.lastDraw >= this.intervalMs)
    ) {
      this.lastDraw = now;
      this.out.write(`progress ${this.line()}\n`);
    }
  }

  finish(): void {
    if (this.mode === 'bar' && this.drawn) this.out.write('\n');
    this.drawn = false;
  }

  private draw() {
    this.lastDraw = Date.now();
    const width = 24;
    const filled = this.total === 0 ? width : Math.round((this.done / this.total) * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    this.out.write(`\r\x1b[K[${bar}] ${this.line()}`);
    this.drawn = true;
  }

  private line(): string {
    const pct = this.total === 0 ? 100 : (this.done / this.total) * 100;
    const seconds = (Date.now() - this.startedAt) / 1000;
    const rate = seconds > 0 ? (this.done - this.doneAtStart) / seconds : 0;
    const left = this.total - this.done;
    const eta = left <= 0 ? '0:00' : rate > 0 ? formatDuration(left / rate) : '?';
    return `${this.done}/${this.total} ${pct.toFixed(1)}% ${rate.toFixed(1)} jobs/s ETA ${eta}`;
  }
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}
