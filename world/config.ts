/** World configuration: every knob of the simulator with its default, resolved and frozen once. */
export const kSurfaces = ['feed', 'stories', 'reels', 'marketplace'] as const;
export const kEvents = ['impression', 'click', 'conversion'] as const;
export const kBidTypes = ['cpc', 'cpa', 'cpm'] as const;
export const kDevices = ['ios', 'android', 'web'] as const;
export const kCreatives = ['image', 'video', 'carousel'] as const;

export type Surface = (typeof kSurfaces)[number];
export type HistoryEvent = (typeof kEvents)[number];
export type BidType = (typeof kBidTypes)[number];
export type Device = (typeof kDevices)[number];
export type Creative = (typeof kCreatives)[number];

export const kDayMs = 86_400_000;
export const kHourMs = 3_600_000;
/** Simulated day 0 starts here: 2026-01-01T00:00:00Z. */
export const kEpochMs = Date.UTC(2026, 0, 1);
/** Requests carry at most this many history events (the newest). */
export const kMaxRequestHistory = 4096;

export interface WorldConfig {
  seed: number;
  days: number;
  users: number;
  ads: number;
  advertisers: number;
  categories: number;
  /** Latent interest topics. */
  topics: number;
  /** Target P(click) per surface, in `kSurfaces` order. */
  baseCtr: readonly number[];
  /** Target P(conversion | click) per surface. */
  baseCvr: readonly number[];
  /** Mean impressions per user per simulated day (heavy users get more). */
  impressionsPerUserDay: number;
  /** Median seeded (pre-day-0) history length in events; lognormal with `historySigma`. */
  historyMedian: number;
  historySigma: number;
  /** Hard cap on the seeded history length. */
  historyCap: number;
  /** Days before day 0 that the seeded history may span. */
  historySpanDays: number;
  /** Share of impressions that are logged as history events (clicks and conversions always are). */
  historyImpressionKeep: number;
  /** Fraction (oldest part) of the seeded history in which the user still browsed the dormant categories. */
  dormantHistoryFraction: number;
  /** Dormant categories per user. */
  dormantPerUser: number;
  /** Day-to-day autocorrelation of user interest vectors (1 = no drift). */
  interestRho: number;
  /** Std of the daily random walk of category trends (logit units). */
  categoryTrendStep: number;
  /** Fraction of active ads retired (and as many new ones introduced) each day. */
  adTurnover: number;
  /** Share of shown ads targeted at the user's top categories (the rest follow inventory weights). */
  targetedShare: number;
}

export const kDefaultConfig: Readonly<WorldConfig> = Object.freeze({
  seed: 42,
  days: 8,
  users: 20_000,
  ads: 20_000,
  /** Default: ads / 10. */
  advertisers: 2_000,
  categories: 64,
  topics: 16,
  baseCtr: Object.freeze([0.02, 0.012, 0.025, 0.015]),
  baseCvr: Object.freeze([0.05, 0.04, 0.03, 0.08]),
  impressionsPerUserDay: 12,
  historyMedian: 40,
  historySigma: 1.3,
  historyCap: 5000,
  historySpanDays: 180,
  historyImpressionKeep: 0.25,
  dormantHistoryFraction: 0.6,
  dormantPerUser: 2,
  interestRho: 0.95,
  categoryTrendStep: 0.12,
  adTurnover: 0.04,
  targetedShare: 0.4,
});

/** Merge overrides into the defaults, validate, freeze. Messages name the option. */
export function resolveConfig(overrides: Partial<WorldConfig> = {}): Readonly<WorldConfig> {
  const given = stripUndefined(overrides);
  const config: WorldConfig = { ...kDefaultConfig, ...given };
  // Unless given, advertisers scale with the inventory (one per 10 ads).
  if (given.advertisers === undefined) config.advertisers = Math.max(1, Math.round(config.ads / 10));
  const positiveInts: Array<keyof WorldConfig> = ['users', 'ads', 'advertisers', 'categories', 'topics'];
  for (const key of positiveInts) {
    const v = config[key] as number;
    if (!Number.isInteger(v) || v < 1) throw new Error(`world config: ${key} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(config.days) || config.days < 0) throw new Error(`world config: days must be an integer >= 0, got ${config.days}`);
  if (!Number.isInteger(config.seed) || config.seed < 0) throw new Error(`world config: seed must be a non-negative integer, got ${config.seed}`);
  if (config.advertisers > config.ads) throw new Error('world config: advertisers must be <= ads');
  if (config.dormantPerUser >= config.categories) throw new Error('world config: dormantPerUser must be < categories');
  for (const key of ['baseCtr', 'baseCvr'] as const) {
    const v = config[key];
    if (v.length !== kSurfaces.length || v.some((p) => !(p > 0 && p < 0.5))) {
      throw new Error(`world config: ${key} must list ${kSurfaces.length} probabilities in (0, 0.5)`);
    }
  }
  for (const key of ['interestRho', 'historyImpressionKeep', 'dormantHistoryFraction', 'adTurnover', 'targetedShare'] as const) {
    const v = config[key];
    if (!(v >= 0 && v <= 1)) throw new Error(`world config: ${key} must be in [0, 1], got ${v}`);
  }
  return Object.freeze({ ...config, baseCtr: Object.freeze([...config.baseCtr]), baseCvr: Object.freeze([...config.baseCvr]) });
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
