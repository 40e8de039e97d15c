/**
 * A small stderr progress bar (no dependency): redraws in place on a TTY at most every 100 ms,
 * prints a plain line every 10% otherwise, so logs stay readable.
 */
export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #unit: string;
  readonly #tty: boolean;
  readonly #started = Date.now();
  #lastDraw = 0;
  #lastDecile = -1;
  #done = false;

  constructor(label: string, total: number, unit = '', stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#total = Math.max(1, total);
    this.#unit = unit;
    this.#tty = Boolean(stream.isTTY);
  }

  update(done: number): void {
    if (this.#done) return;
    const now = Date.now();
    const fraction = Math.min(1, done / this.#total);
    if (this.#tty) {
      if (now - this.#lastDraw < 100 && done < this.#total) return;
      this.#lastDraw = now;
      const width = 30;
      const filled = Math.round(fraction * width);
      const elapsed = (now - this.#started) / 1000;
      const eta = fraction > 0 ? elapsed * (1 / fraction - 1) : 0;
      process.stderr.write(
        `\r${this.#label.padEnd(18)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
          `${format(done)}/${format(this.#total)}${this.#unit} ${elapsed.toFixed(1)}s eta ${eta.toFixed(0)}s  `,
      );
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile === this.#lastDecile) return;
      this.#lastDecile = decile;
      process.stderr.write(`${this.#label} ${decile * 10}% (${format(done)}/${format(this.#total)}${this.#unit}, ${((now - this.#started) / 1000).toFixed(1)}s)\n`);
    }
  }

  finish(note = ''): void {
    if (this.#done) return;
    this.update(this.#total);
    this.#done = true;
    const elapsed = ((Date.now() - this.#started) / 1000).toFixed(1);
    process.stderr.write(this.#tty ? `${note ? ` ${note}` : ''}\n` : `${this.#label} done in ${elapsed}s${note ? ` ${note}` : ''}\n`);
  }
}

function format(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  return String(Math.round(n));
}
