/** pCTR / pCVR -> eCPM, ordering and topK. Knows nothing of HTTP or tensors. */
import type { Candidate } from '../features/request.js';

/**
 * One ranked candidate. A class, not an object literal, for the garbage collector: V8 tracks each
 * object literal's allocation site and, once enough of its objects outlive a young-generation
 * collection (these wait for serialization across an await), allocates all of them straight in the
 * old generation. That was ~50 KB per 500-candidate request of short-lived objects in old space,
 * and the old-space collections it forced every ~2 s were the clusters of slow requests in the
 * latency tail. Instances created by `new` carry no allocation site.
 */
export class RankedItem {
  declare pcvr?: number;
  constructor(
    readonly adId: number,
    readonly pctr: number,
    readonly ecpm: number,
    readonly rank: number,
  ) {}
}

/** eCPM per DESIGN.md: cpc = 1000*bid*pctr, cpa = 1000*bid*pctr*pcvr, cpm = bid. */
export function ecpmOf(candidate: Candidate, pctr: number, pcvr: number | undefined): number {
  switch (candidate.bidType) {
    case 'cpc':
      return 1000 * candidate.bid * pctr;
    case 'cpa':
      return 1000 * candidate.bid * pctr * (pcvr ?? 0);
    case 'cpm':
      return candidate.bid;
  }
}

/**
 * Rank candidates by eCPM descending; ties keep request order (stable) so identical inputs always
 * give identical output. `pcvr` holds a score for every candidate (or null when no cvr was needed).
 */
export function rankCandidates(candidates: Candidate[], pctr: Float32Array, pcvr: Float32Array | null, topK: number | undefined): RankedItem[] {
  const n = candidates.length;
  const ecpm = new Float64Array(n);
  for (let i = 0; i < n; i++) ecpm[i] = ecpmOf(candidates[i], pctr[i], pcvr ? pcvr[i] : undefined);
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => ecpm[b] - ecpm[a] || a - b);
  const k = Math.min(topK ?? n, n);
  const ranked: RankedItem[] = new Array(k);
  for (let r = 0; r < k; r++) {
    const i = order[r];
    const item = new RankedItem(candidates[i].adId, pctr[i], ecpm[i], r + 1);
    if (pcvr && candidates[i].bidType === 'cpa') item.pcvr = pcvr[i];
    ranked[r] = item;
  }
  return ranked;
}
