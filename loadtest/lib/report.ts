/** Result files (JSON + Markdown + PNG via plot.py) and plain-text tables for the load-test CLIs. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/paths.js';

export function timestamp(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

export function hostInfo() {
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  };
}

/** Aggregate CPU times (jiffies) from the first line of /proc/stat; null where there is none. */
export interface CpuTimes {
  total: number;
  steal: number;
}

export function parseCpuTimes(procStat: string): CpuTimes | null {
  const line = procStat.split('\n', 1)[0];
  if (!/^cpu\s/.test(line)) return null;
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user.
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 8 || fields.some((x) => !Number.isFinite(x))) return null;
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] };
}

export function readCpuTimes(): CpuTimes | null {
  try {
    return parseCpuTimes(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Share of the host's CPU time that the hypervisor gave to other guests between two readings. On
 * a shared VM this moved between 0 and over 20% within minutes, and the bench's numbers with it: a
 * run with a large share is not comparable with one without.
 */
export function stolenShare(before: CpuTimes | null, after: CpuTimes | null): number | null {
  if (!before || !after || after.total <= before.total) return null;
  return +((after.steal - before.steal) / (after.total - before.total)).toFixed(4);
}

/** Above this stolen share a result says that the host was contended while it ran. */
export const kStolenShareWarning = 0.05;

export function stolenText(share: number | null): string {
  if (share === null) return 'CPU time stolen by the hypervisor: not measured (no /proc/stat).';
  const text = `CPU time stolen by the hypervisor during the run: ${(share * 100).toFixed(1)}%.`;
  return share > kStolenShareWarning ? `${text} **Other guests took more than ${kStolenShareWarning * 100}% of this host's CPU while it ran: compare this run with others only with care.**` : text;
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padStart(widths[i])).join(' | ') + ' |';
  return [line(headers), '|' + widths.map((w) => '-'.repeat(w + 1) + ':').join('|') + '|', ...cells.map(line)].join('\n');
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (Number.isInteger(x)) return String(x);
  if (Math.abs(x) >= 1000) return Math.round(x).toString();
  if (Math.abs(x) >= 100) return x.toFixed(1);
  if (Math.abs(x) >= 10) return x.toFixed(2);
  return x.toFixed(3);
}

export interface Written {
  json: string;
  markdown: string;
  png: string | null;
  plotError: string | null;
}

/** Write <kind>-<ts>.json, <kind>-latest.md (and <kind>-<ts>.md), optionally a PNG via plot.py. */
export function writeResults(outDir: string, kind: string, stamp: string, result: unknown, markdown: string, plot: boolean): Written {
  mkdirSync(outDir, { recursive: true });
  // Committed results must not name this machine's paths: paths inside the project become relative.
  const relative = (text: string) => text.split(projectRoot + path.sep).join('').split(projectRoot).join('.');
  const json = path.join(outDir, `${kind}-${stamp}.json`);
  const text = relative(JSON.stringify(result, null, 2) + '\n');
  writeFileSync(json, text);
  writeFileSync(path.join(outDir, `${kind}-latest.json`), text);
  const md = path.join(outDir, `${kind}-latest.md`);
  writeFileSync(md, relative(markdown));
  writeFileSync(path.join(outDir, `${kind}-${stamp}.md`), relative(markdown));
  let png: string | null = null;
  let plotError: string | null = null;
  if (plot) {
    const python = process.env.PLOT_PYTHON ?? '/usr/bin/python3';
    const target = path.join(outDir, `${kind}-${stamp}.png`);
    const run = spawnSync(python, [path.join(projectRoot, 'loadtest', 'plot.py'), json, target, path.join(outDir, `${kind}-latest.png`)], { encoding: 'utf8', timeout: 60_000 });
    if (run.status === 0 && existsSync(target)) png = target;
    else plotError = (run.error?.message ?? run.stderr ?? '').trim().split('\n').slice(-3).join(' ') || `exit ${run.status}`;
  }
  return { json, markdown: md, png, plotError };
}
