/**
 * The models that `npm start` serves: every bundled version passes the gate, and /v1/rank reproduces
 * the pipeline's PyTorch scores for the golden requests, which checks the whole request -> tensor path
 * (TypeScript) against the pipeline's shard -> tensor path (Python).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../src/paths.js';
import type { Golden } from '../src/models/gate.js';
import { toColumnarForm } from '../src/features/columnar.js';
import { startApp } from './helpers/app.js';

const repo = path.join(projectRoot, 'models');

test('bundled models are ready and /v1/rank reproduces their golden scores', async (t) => {
  const app = await startApp(repo);
  t.after(() => app.close());
  const { registry } = app.ranker;
  const rollout = registry.rollout!;
  assert.ok(rollout, 'models/rollout.json is valid');
  assert.deepEqual(registry.routing.warnings, []);
  for (const surface of ['feed', 'stories', 'reels']) assert.ok(registry.routing.surfaces.has(surface as 'feed'), `${surface} is served`);
  assert.equal((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 200);

  let compared = 0;
  for (const [name, flags] of Object.entries(rollout.models)) {
    const entry = registry.get(name, flags.stable)!;
    assert.equal(entry.state, 'ready', `${entry.key}: ${entry.reason}`);
    const golden = JSON.parse(readFileSync(path.join(entry.dir, 'golden.json'), 'utf8')) as Golden;
    assert.ok((golden.requests ?? []).length > 0, `${entry.key} has golden requests`);
    const atol = golden.tolerance?.atol ?? 1e-4;
    const rtol = golden.tolerance?.rtol ?? 1e-3;
    for (const g of golden.requests!) {
      const objective = entry.manifest!.objective;
      const body = structuredClone(g.body);
      // cvr scores are returned for cpa bids; pin the version under test on its own surface.
      if (objective === 'cvr') body.candidates.forEach((c) => (c.bidType = 'cpa'));
      body.pin = { [name]: entry.version };
      const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
      assert.equal(res.statusCode, 200, res.body);
      const out = res.json();
      assert.equal(out.models[objective].version, entry.version);
      // The columnar form of the same request must rank identically (same scores, same order).
      const columnar = await app.inject({ method: 'POST', url: '/v1/rank', payload: toColumnarForm(body) });
      assert.equal(columnar.statusCode, 200, columnar.body);
      assert.deepEqual(columnar.json().ranked, out.ranked, `${entry.key}: columnar form ranks like rows`);
      const byAd = new Map<number, { pctr: number; pcvr?: number }>(out.ranked.map((r: { adId: number; pctr: number; pcvr?: number }) => [r.adId, r]));
      g.body.candidates.forEach((c, i) => {
        const got = objective === 'ctr' ? byAd.get(c.adId)!.pctr : byAd.get(c.adId)!.pcvr!;
        assert.ok(Math.abs(got - g.p[i]) <= atol + rtol * Math.abs(g.p[i]), `${entry.key} candidate ${i}: ${got} vs ${g.p[i]}`);
        compared++;
      });
    }
  }
  t.diagnostic(`${compared} golden scores reproduced through /v1/rank`);
  assert.ok(compared > 0);
});
