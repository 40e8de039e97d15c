/** The bench's reading of the server's /metrics: the histogram quantile bound of a run. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { histogramQuantileBound, type Scrape } from '../loadtest/lib/metrics.js';

const kBounds = ['0.5', '1', '2', '3', '5', '8', '12', '20', '35', '+Inf'];

/** A scrape of rank_request_duration_ms with the given cumulative counts per surface. */
function scrapeOf(counts: Record<string, number[]>): Scrape {
  const values: Scrape = new Map();
  for (const [surface, cumulative] of Object.entries(counts)) {
    kBounds.forEach((le, i) => values.set(`rank_request_duration_ms_bucket{le="${le}",surface="${surface}"}`, cumulative[i]));
  }
  return values;
}

test('the quantile bound is the first bucket whose count over the run reaches the quantile, summed over surfaces', () => {
  const before = scrapeOf({ feed: [0, 0, 10, 20, 30, 30, 30, 30, 30, 30] });
  // Over the run: 100 feed requests, 40 within 3 ms, 98 within 5 ms, 99 within 12 ms, 100 within 35 ms.
  const after = scrapeOf({ feed: [0, 0, 10, 60, 128, 128, 129, 129, 130, 130] });
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.4), 3);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.5), 5);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.98), 5);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.99), 12);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 1), 35);
  // A second surface's requests count too (50 more, all slow: 20-35 ms).
  const both = scrapeOf({ feed: [0, 0, 10, 60, 128, 128, 129, 129, 130, 130], reels: [0, 0, 0, 0, 0, 0, 0, 0, 50, 50] });
  assert.equal(histogramQuantileBound(scrapeOf({ feed: [0, 0, 10, 20, 30, 30, 30, 30, 30, 30], reels: Array(10).fill(0) }), both, 'rank_request_duration_ms', 0.99), 35);
});

test('no bound when nothing was timed, or when the quantile lies past the last finite bucket', () => {
  const quiet = scrapeOf({ feed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 9] });
  assert.equal(histogramQuantileBound(quiet, quiet, 'rank_request_duration_ms', 0.99), null);
  assert.equal(histogramQuantileBound(new Map(), new Map(), 'rank_request_duration_ms', 0.99), null);
  const slow = scrapeOf({ feed: [0, 0, 0, 0, 0, 0, 0, 0, 90, 100] });
  assert.equal(histogramQuantileBound(new Map(), slow, 'rank_request_duration_ms', 0.9), 35);
  assert.equal(histogramQuantileBound(new Map(), slow, 'rank_request_duration_ms', 0.99), null);
});
