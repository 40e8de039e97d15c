/**
 * CLI of the synthetic world (`npm run world -- <command> [flags]`):
 *   generate --days N --users U [--ads A --advertisers V --seed S --impressions-per-user-day R] --out DIR
 *   requests --count N [--candidates C --history H --surface S --first F --topK K] [world flags] --out FILE.jsonl
 *   label --log IN.jsonl --out DIR [world flags]
 * World flags: `--world DIR` (read the config `generate` wrote into DIR/index.json) or the generate
 * flags (users, ads, advertisers, seed, impressions-per-user-day) again, plus `--day D`. `requests`
 * and `label` must rebuild the served world; unknown flags are refused, so a typo cannot drop one.
 */
import { checkFlags, intFlag, numberFlag, parseFlags, required } from './cli-flags.js';
import { kWorldKnobFlags } from './cli-world.js';
import { generate } from './generate.js';

const kUsage = `usage:
  world generate --days N --users U [--ads A] [--advertisers V] [--seed S] [--impressions-per-user-day R] --out DIR
  world requests --count N [--candidates C] [--history H] [--surface feed|stories|reels|marketplace] [--first F] [--topK K] [WORLD] --out FILE.jsonl
  world label --log IN.jsonl --out DIR [WORLD]
WORLD: --world DIR (a generated world's index.json config) or [--users U] [--ads A] [--advertisers V] [--seed S] [--impressions-per-user-day R]; and [--day D]`;

async function main(argv: readonly string[]): Promise<void> {
  const { command, flags } = parseFlags(argv);
  if (command === 'generate') {
    checkFlags('generate', flags, ['out', 'days', ...kWorldKnobFlags]);
    const out = required(flags, 'out');
    const result = generate({
      out,
      config: {
        days: intFlag(flags, 'days'),
        users: intFlag(flags, 'users'),
        ads: intFlag(flags, 'ads'),
        advertisers: intFlag(flags, 'advertisers'),
        seed: intFlag(flags, 'seed'),
        impressionsPerUserDay: numberFlag(flags, 'impressions-per-user-day'),
      },
    });
    const imps = result.shards.reduce((a, s) => a + s.impressions, 0);
    const last = result.drift[result.drift.length - 1];
    process.stderr.write(
      `wrote ${result.shards.length} shards, ${imps} impressions to ${out} in ${result.seconds.toFixed(1)}s ` +
        `(${Math.round(imps / result.seconds)} imp/s)` +
        (last ? `; day ${last.day} oracle AUC ${last.oracleClickAuc.toFixed(4)} vs frozen day-0 ${last.frozenDay0ClickAuc.toFixed(4)}` : '') +
        '\n',
    );
    return;
  }
  if (command === 'requests' || command === 'label') {
    const mod = command === 'requests' ? await import('./requests-cli.js') : await import('./labeler-cli.js');
    await mod.run(flags);
    return;
  }
  throw new Error(command ? `unknown command '${command}'\n${kUsage}` : kUsage);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`world: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
