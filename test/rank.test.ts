/** Ranking without HTTP: eCPM per bid type, order, ties and topK. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ecpmOf, orderByDescending, rankCandidates } from '../src/ranking/rank.js';
import type { Candidate } from '../src/features/request.js';

const candidate = (adId: number, bid: number, bidType: Candidate['bidType']): Candidate => ({ adId, advertiserId: 1, category: 1, bid, bidType });

test('eCPM follows the bid type: cpc 1000*bid*pctr, cpa 1000*bid*pctr*pcvr, cpm the bid', () => {
  assert.equal(ecpmOf(candidate(1, 2, 'cpc'), 0.5, undefined), 1000);
  assert.equal(ecpmOf(candidate(1, 2, 'cpa'), 0.5, 0.25), 250);
  assert.equal(ecpmOf(candidate(1, 2, 'cpa'), 0.5, undefined), 0);
  assert.equal(ecpmOf(candidate(1, 7, 'cpm'), 0.5, 0.25), 7);
});

test('the order matches a stable comparator sort, ties in request order, on tie-heavy and empty inputs', () => {
  let seed = 12345;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (const n of [0, 1, 2, 3, 7, 64, 500, 513, 1000]) {
    for (let trial = 0; trial < 20; trial++) {
      // Few distinct values, so most keys tie with others.
      const keys = Float64Array.from({ length: n }, () => Math.floor(random() * 12) / 4);
      const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) => keys[b] - keys[a] || a - b);
      assert.deepEqual(Array.from(orderByDescending(keys)), expected, `n=${n} trial ${trial}`);
    }
  }
});

test('rankCandidates ranks by eCPM descending, keeps request order on ties, attaches pcvr to cpa only, and cuts to topK', () => {
  const candidates = [candidate(10, 1, 'cpm'), candidate(11, 2, 'cpc'), candidate(12, 4, 'cpa'), candidate(13, 1, 'cpm'), candidate(14, 3, 'cpm')];
  const pctr = Float32Array.from([0.1, 0.001, 0.01, 0.2, 0.3]);
  const pcvr = Float32Array.from([0, 0, 0.5, 0, 0]);
  const { items: ranked, candidateIndex } = rankCandidates(candidates, pctr, pcvr, undefined);
  // eCPM: 1, 2*0.001*1000=2, 4*0.01*0.5*1000=20, 1, 3 -> 12, 14, 11, then the two ties 10 and 13 in request order.
  assert.deepEqual(ranked.map((r) => r.adId), [12, 14, 11, 10, 13]);
  assert.deepEqual(ranked.map((r) => r.rank), [1, 2, 3, 4, 5]);
  assert.deepEqual([...candidateIndex], [2, 4, 1, 0, 3]);
  assert.ok(Math.abs(ranked[0].ecpm - 20) < 1e-4);
  assert.equal(ranked[0].pcvr, pcvr[2]);
  assert.ok(ranked.slice(1).every((r) => r.pcvr === undefined), 'pcvr only on cpa candidates');
  const top2 = rankCandidates(candidates, pctr, pcvr, 2);
  assert.deepEqual(top2.items.map((r) => r.adId), [12, 14]);
  assert.deepEqual([...top2.candidateIndex], [2, 4]);
  assert.deepEqual(rankCandidates(candidates, pctr, null, 99).items.length, 5);
});
