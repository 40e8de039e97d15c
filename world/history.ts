/**
 * Seeded long histories (the days before day 0). Lengths are heavy-tailed: lognormal around
 * config.historyMedian events, scaled by the user's activity, capped at config.historyCap, so most
 * users have tens of events and a few have thousands. In the oldest part of a history
 * (config.dormantHistoryFraction) the user still browsed the dormant categories, so those interests
 * show up only in old events; later events follow the live delivery mix.
 */
import { kDayMs, kEpochMs, type WorldConfig } from './config.js';
import { EventLog } from './events.js';
import type { Rng } from './rng.js';
import { simulateUserSpan, type TimelineContext } from './timeline.js';

/** Share of shown ads drawn from the dormant categories while the user was still into them. */
const kDormantBias = 0.5;

export function seedHistories(ctx: TimelineContext, config: WorldConfig, rng: Rng, onUser?: (u: number) => void): EventLog {
  const users = ctx.entities.users;
  const log = new EventLog(users.count);
  const ctr = config.baseCtr.reduce((a, b) => a + b, 0) / config.baseCtr.length;
  /** Expected history events per impression: kept impressions plus click and conversion events. */
  const eventsPerImpression = config.historyImpressionKeep + ctr * (1 - config.historyImpressionKeep) + ctr * (1 + 0.05);
  const mu = Math.log(config.historyMedian);
  for (let u = 0; u < users.count; u++) {
    const intensity = Math.pow(users.impRate[u] / config.impressionsPerUserDay, 0.7);
    const target = Math.min(config.historyCap, Math.max(2, Math.round(rng.lognormal(mu, config.historySigma) * intensity)));
    const spanDays = Math.max(7, Math.min(config.historySpanDays, Math.round(users.tenureDays[u])));
    const n = Math.max(1, Math.round(target / eventsPerImpression));
    simulateUserSpan(ctx, u, n, kEpochMs - spanDays * kDayMs, spanDays, rng, log, null, kDormantBias, Math.floor(n * config.dormantHistoryFraction));
    log.endUser(u);
    if (onUser) onUser(u);
  }
  return log.finish();
}
