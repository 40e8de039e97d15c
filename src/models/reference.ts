/**
 * The default reference batch for the validation gate: deterministic requests built from the
 * manifest's own feature spec (ids across the hash range, histories of every bucket length, dense
 * values spread around each feature's mean), so any model version can be checked without data.
 * The app may inject another source (the world simulator's request generator).
 */
import { kSurfaces, type Manifest } from './manifest.js';
import type { FeatureMap, RankRequest } from '../features/request.js';
import { createWorld, generateRankRequest, type World } from '../../world/index.js';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const kEvents = ['impression', 'impression', 'impression', 'click', 'conversion'];

export function manifestReferenceRequests(manifest: Manifest, count: number): RankRequest[] {
  const random = mulberry32(0x5eed + manifest.version);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const dense = manifest.inputs.flatMap((i) => (i.source.kind === 'dense' ? i.source.features : []));
  const features = (prefix: string): FeatureMap => {
    const map: FeatureMap = {};
    for (const f of dense) {
      if (!f.field.startsWith(prefix)) continue;
      const key = f.field.slice(prefix.length);
      if (f.transform === 'onehot') map[key] = f.values![Math.floor(random() * f.values!.length)];
      else if (f.transform === 'standardize') map[key] = Math.max(0, (f.mean ?? 0) + gauss() * (f.std ?? 1));
      else map[key] = Math.max(0, Math.expm1((f.mean ?? 0) + gauss() * (f.std ?? 1)));
    }
    return map;
  };
  const buckets = manifest.history.buckets;
  return Array.from({ length: count }, (_, r) => {
    const historyLength = Math.floor(random() * buckets[r % buckets.length]);
    const context = features('context.');
    return {
      surface: manifest.surface,
      requestId: `reference-${r}`,
      user: {
        id: Math.floor(random() * 1e9),
        features: features('user.features.'),
        history: Array.from({ length: historyLength }, (_, i) => ({
          adId: Math.floor(random() * 1e6),
          category: Math.floor(random() * 64),
          surface: kSurfaces[Math.floor(random() * kSurfaces.length)],
          event: kEvents[Math.floor(random() * kEvents.length)],
          ts: 1767225600000 + i * 60000,
        })),
      },
      context,
      candidates: Array.from({ length: 64 }, () => {
        const f = features('candidate.features.');
        return {
          adId: Math.floor(random() * 1e6),
          advertiserId: Math.floor(random() * 1e4),
          category: Math.floor(random() * 64),
          bid: Math.round(random() * 500) / 100,
          bidType: 'cpc' as const,
          features: f,
        };
      }),
    };
  });
}

/**
 * The default reference batch: realistic requests from the simulated world for the model's surface
 * (histories of several lengths), plus the manifest-derived ones that cover every length bucket and
 * each feature's spread. The world is built once, lazily, small enough to take well under a second.
 */
let referenceWorld: World | null = null;

export function worldReferenceRequests(manifest: Manifest, count: number): RankRequest[] {
  referenceWorld ??= createWorld({ users: 2000, ads: 5000, seed: 7 });
  const lengths = [0, 8, 40, 120, 300, 1000];
  const fromWorld = Array.from({ length: Math.max(1, count - 3) }, (_, i) =>
    generateRankRequest(referenceWorld!, { surface: manifest.surface, candidates: 64, historyLength: lengths[i % lengths.length], seed: 1000 + i }) as RankRequest,
  );
  return [...fromWorld, ...manifestReferenceRequests(manifest, 3)];
}
