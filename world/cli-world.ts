/**
 * World flags shared by the `requests` and `label` commands: they must rebuild the world `generate`
 * made, so either every world knob `generate` took is repeated as a flag, or `--world DIR` reads the
 * config `generate` wrote into DIR/index.json (preferred: nothing to forget).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kDefaultConfig, type WorldConfig } from './config.js';
import { intFlag, numberFlag } from './cli-flags.js';
import { advanceWorld } from './simulate.js';
import { createWorld, type World } from './world.js';

export const kDefaultServingWorld = { users: 20_000, ads: 20_000, seed: 42 } as const;

/** The flags of `generate` that shape the world, with the config key each sets. */
const kWorldKnobs = [
  ['users', 'users'],
  ['ads', 'ads'],
  ['advertisers', 'advertisers'],
  ['seed', 'seed'],
  ['impressions-per-user-day', 'impressionsPerUserDay'],
] as const satisfies ReadonlyArray<readonly [string, keyof WorldConfig]>;

/** The flags that shape the world (generate takes them; requests and label repeat them). */
export const kWorldKnobFlags: readonly string[] = kWorldKnobs.map(([flag]) => flag);

/** Every flag worldFromFlags reads, for the subcommands' lists of known flags. */
export const kWorldFlags: readonly string[] = [...kWorldKnobFlags, 'day', 'world'];

function knobValue(flags: Record<string, string>, flag: string): number | undefined {
  return flag === 'impressions-per-user-day' ? numberFlag(flags, flag) : intFlag(flags, flag);
}

export function worldConfigFromFlags(flags: Record<string, string>): Partial<WorldConfig> {
  const days = Math.max(1, intFlag(flags, 'day', 0)! + 1);
  if (flags.world !== undefined) return { ...configFromIndex(flags.world, flags), days };
  return {
    users: intFlag(flags, 'users', kDefaultServingWorld.users),
    ads: intFlag(flags, 'ads', kDefaultServingWorld.ads),
    advertisers: intFlag(flags, 'advertisers'),
    seed: intFlag(flags, 'seed', kDefaultServingWorld.seed),
    impressionsPerUserDay: numberFlag(flags, 'impressions-per-user-day'),
    days,
  };
}

/**
 * The world config recorded in DIR/index.json (`generate`, `label` and merge-world all write it).
 * A world flag given as well must agree with it: two sources that disagree are a mistake either way.
 */
export function configFromIndex(dir: string, flags: Record<string, string> = {}): Partial<WorldConfig> {
  const path = join(dir, 'index.json');
  let index: { config?: Record<string, unknown> };
  try {
    index = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`--world ${dir}: cannot read ${path} (${err instanceof Error ? err.message : String(err)})`);
  }
  const recorded = index.config;
  if (typeof recorded !== 'object' || recorded === null) throw new Error(`--world ${dir}: ${path} has no "config" (not written by world generate?)`);
  const config: Record<string, unknown> = {};
  for (const key of Object.keys(kDefaultConfig)) if (recorded[key] !== undefined) config[key] = recorded[key];
  for (const [flag, key] of kWorldKnobs) {
    const given = knobValue(flags, flag);
    if (given !== undefined && given !== config[key]) {
      throw new Error(`--${flag} ${given} disagrees with ${path} (config.${key} ${JSON.stringify(config[key])}); drop the flag or pick the right --world`);
    }
  }
  delete config.days;
  return config as Partial<WorldConfig>;
}

/** The world at the start of --day (default 0). */
export function worldFromFlags(flags: Record<string, string>): World {
  const config = worldConfigFromFlags(flags);
  return advanceWorld(createWorld(config), intFlag(flags, 'day', 0)!);
}
