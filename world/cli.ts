/**
 * CLI of the synthetic world (`npm run world -- <command> [flags]`):
 *   generate --days N --users U [--ads A --advertisers V --seed S] --out DIR
 *   requests --count N [--candidates C --history H --surface S --users U --ads A --seed S] --out FILE.jsonl
 *   label --log IN.jsonl --out DIR [--users U --ads A --seed S --day D]
 * World flags (users, ads, advertisers, seed) must match between `requests` and `label`.
 */
import { intFlag, numberFlag, parseFlags, required } from './cli-flags.js';
import { generate } from './generate.js';

const kUsage = `usage:
  world generate --days N --users U [--ads A] [--advertisers V] [--seed S] [--impressions-per-user-day R] --out DIR
  world requests --count N [--candidates C] [--history H] [--surface feed|stories|reels|marketplace] [--users U] [--ads A] [--seed S] --out FILE.jsonl
  world label --log IN.jsonl --out DIR [--users U] [--ads A] [--seed S] [--day D]`;

async function main(argv: readonly string[]): Promise<void> {
  const { command, flags } = parseFlags(argv);
  if (command === 'generate') {
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
