/**
 * V8 heap flags the server process is started with. They go on the `node` command line of every
 * launcher (package.json `start`, deploy/Dockerfile, the benchmarks' server, scripts/closed-loop.sh),
 * because NODE_OPTIONS refuses them ("is not allowed in NODE_OPTIONS"); a test checks the launchers
 * against this list, and the server logs a warning when it runs without them.
 *
 * --initial-old-space-size=128: a floor under the old generation's allocation limit. This server
 * keeps ~17-20 MB live in old space, so V8 sized the limit just above that, and once the headroom
 * under it fell below the young generation's capacity, every scavenge that promoted anything started
 * incremental marking again: in 2 of 3 runs at 150 req/s, a full mark-compact every ~0.3 s (31-39 in
 * 10 s, 3-9 ms each), which set the p99 (docs/DESIGN-NOTES.md 16). With the floor, V8 skips full
 * collections below 128 MB: one in 60 s at 300 req/s.
 *
 * --max-semi-space-size=64: a young generation large enough that ~100 KB request bodies die young
 * (.npmrc sets it too, for every npm script; it is repeated here for launchers that bypass npm).
 */
export const kServerNodeFlags: readonly string[] = ['--max-semi-space-size=64', '--initial-old-space-size=128'];

/**
 * The flags of kServerNodeFlags (by name) that neither `execArgv` nor NODE_OPTIONS sets (flags from
 * NODE_OPTIONS, such as `.npmrc`'s semi-space size, are in effect but absent from process.execArgv).
 */
export function missingServerNodeFlags(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string[] {
  const present = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map((arg) => arg.split('=')[0].replace(/_/g, '-')));
  return kServerNodeFlags.filter((flag) => !present.has(flag.split('=')[0]));
}
