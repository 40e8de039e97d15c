#!/usr/bin/env node
/**
 * Print the stable version of MODEL that REPO/rollout.json routes (what the server serves).
 *   node scripts/stable-version.mjs REPO MODEL
 * The newest version directory on disk is not it: a repo may hold a newer version that is loaded
 * but unrouted (published with --rollout keep, or a canary), and the closed loop's "served by"
 * comparison must name the version that really scored the logged impressions.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [repo, model] = process.argv.slice(2);
if (!repo || !model) {
  console.error('usage: stable-version.mjs REPO MODEL');
  process.exit(2);
}
const file = join(repo, 'rollout.json');
const stable = JSON.parse(readFileSync(file, 'utf8')).models?.[model]?.stable;
if (!Number.isInteger(stable)) {
  console.error(`stable-version: ${file}: rollout.json has no stable version for ${model}`);
  process.exit(1);
}
console.log(stable);
