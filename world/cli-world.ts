/** World flags shared by the `requests` and `label` commands (they must rebuild the same world). */
import type { WorldConfig } from './config.js';
import { intFlag } from './cli-flags.js';
import { advanceWorld } from './simulate.js';
import { createWorld, type World } from './world.js';

export const kDefaultServingWorld = { users: 20_000, ads: 20_000, seed: 42 } as const;

export function worldConfigFromFlags(flags: Record<string, string>): Partial<WorldConfig> {
  return {
    users: intFlag(flags, 'users', kDefaultServingWorld.users),
    ads: intFlag(flags, 'ads', kDefaultServingWorld.ads),
    advertisers: intFlag(flags, 'advertisers'),
    seed: intFlag(flags, 'seed', kDefaultServingWorld.seed),
    days: Math.max(1, intFlag(flags, 'day', 0)! + 1),
  };
}

/** The world at the start of --day (default 0). */
export function worldFromFlags(flags: Record<string, string>): World {
  const config = worldConfigFromFlags(flags);
  return advanceWorld(createWorld(config), intFlag(flags, 'day', 0)!);
}
