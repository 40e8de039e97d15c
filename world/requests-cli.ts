/** `requests`: write N `/v1/rank` bodies as JSON lines, for load tests. */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { checkFlags, intFlag, required } from './cli-flags.js';
import { kWorldFlags, worldFromFlags } from './cli-world.js';
import { kSurfaces, type Surface } from './config.js';
import { ProgressBar } from './progress.js';
import { generateRankRequest, requestRng } from './requests.js';

/** Traffic share of each surface when --surface is not given. */
const kTrafficCum = [0.45, 0.65, 0.85, 1.0];

export const kRequestsFlags: readonly string[] = ['out', 'count', 'candidates', 'history', 'first', 'topK', 'surface', ...kWorldFlags];

export async function run(flags: Record<string, string>): Promise<void> {
  checkFlags('requests', flags, kRequestsFlags);
  const out = required(flags, 'out');
  const count = intFlag(flags, 'count', 1000)!;
  const candidates = intFlag(flags, 'candidates', 200)!;
  const history = intFlag(flags, 'history');
  const first = intFlag(flags, 'first', 0)!;
  const topK = intFlag(flags, 'topK');
  const fixed = flags.surface as Surface | undefined;
  if (fixed !== undefined && !kSurfaces.includes(fixed)) throw new Error(`--surface must be one of ${kSurfaces.join(', ')}`);
  const started = Date.now();
  const world = worldFromFlags(flags);
  const rng = requestRng(world, 'request-surfaces', first);
  const stream = createWriteStream(out);
  const bar = new ProgressBar('requests', count, ' req');
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const surface = fixed ?? kSurfaces[rng.pickCumulative(kTrafficCum)];
    const body = generateRankRequest(world, { surface, candidates, historyLength: history, seed: first + i, topK });
    const line = `${JSON.stringify(body)}\n`;
    bytes += line.length;
    if (!stream.write(line)) await once(stream, 'drain');
    if (i % 50 === 0) bar.update(i);
  }
  stream.end();
  await once(stream, 'finish');
  bar.finish();
  process.stderr.write(`wrote ${count} requests (${(bytes / count / 1024).toFixed(1)} KiB each on average) to ${out} in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
}
