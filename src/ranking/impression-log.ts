/**
 * The impression log: one JSON line per ranked request with what was shown, the model version and
 * arm that scored it, for the labeler (world/labeler) to close the loop. Written by pino's
 * asynchronous destination so the request path only formats one line.
 */
import pino from 'pino';
import type { RankRequest } from '../features/request.js';
import type { RankResult } from './rank-service.js';

export interface ImpressionLog {
  /** `candidateIndex[r]`: the request position of `result.ranked[r]` (adIds may repeat in a request). */
  write(request: RankRequest, result: RankResult, candidateIndex: Uint32Array): void;
  close(): Promise<void>;
}

export function createImpressionLog(file: string): ImpressionLog {
  const destination = pino.destination({ dest: file, sync: false, mkdir: true });
  const logger = pino({ base: undefined, timestamp: false, messageKey: 'msg' }, destination);
  return {
    write(request, result, candidateIndex) {
      logger.info({
        kind: 'impression',
        ts: Date.now(),
        requestId: result.requestId,
        userId: request.user.id,
        surface: result.surface,
        hour: typeof request.context?.hour === 'number' ? request.context.hour : undefined,
        models: result.models,
        shown: result.ranked.map((r, i) => {
          const c = request.candidates[candidateIndex[i]];
          return { adId: r.adId, advertiserId: c.advertiserId, category: c.category, bid: c.bid, bidType: c.bidType, rank: r.rank, pctr: r.pctr, pcvr: r.pcvr, ecpm: r.ecpm };
        }),
      });
    },
    close() {
      return new Promise((resolve) => {
        destination.flush?.();
        destination.end();
        destination.on('close', () => resolve());
        setTimeout(resolve, 1000).unref();
      });
    },
  };
}
