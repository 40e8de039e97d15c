/** The bench's reading of hypervisor steal from /proc/stat and how a result reports it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kStolenShareWarning, parseCpuTimes, stolenShare, stolenText } from '../loadtest/lib/report.js';

const kProcStat = (user: number, idle: number, steal: number) =>
  `cpu  ${user} 0 100 ${idle} 5 0 7 ${steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\n`;

test('parseCpuTimes sums the first eight fields of the aggregate line and takes steal from the eighth', () => {
  assert.deepEqual(parseCpuTimes(kProcStat(1000, 3000, 40)), { total: 1000 + 100 + 3000 + 5 + 7 + 40, steal: 40 });
  // guest and guest_nice are already counted in user: not added again
  assert.deepEqual(parseCpuTimes('cpu  10 0 0 10 0 0 0 0 99 99\n'), { total: 20, steal: 0 });
  assert.equal(parseCpuTimes('cpu0 1 2 3 4 5 6 7 8\n'), null);
  assert.equal(parseCpuTimes('cpu  1 2 3\n'), null);
  assert.equal(parseCpuTimes('cpu  1 2 3 x 5 6 7 8\n'), null);
  assert.equal(parseCpuTimes(''), null);
});

test('stolenShare is the steal difference over the total difference, null without two readings', () => {
  const before = parseCpuTimes(kProcStat(1000, 3000, 40));
  const after = parseCpuTimes(kProcStat(1700, 3200, 140));
  assert.equal(stolenShare(before, after), +(100 / (700 + 200 + 100)).toFixed(4));
  assert.equal(stolenShare(null, after), null);
  assert.equal(stolenShare(before, null), null);
  assert.equal(stolenShare(after, before), null); // counters never go back: a reading from another boot
});

test('stolenText flags a contended run and says when nothing was measured', () => {
  assert.match(stolenText(0.012), /stolen by the hypervisor during the run: 1\.2%\.$/);
  assert.match(stolenText(kStolenShareWarning + 0.01), /compare this run with others only with care/);
  assert.doesNotMatch(stolenText(kStolenShareWarning), /with care/);
  assert.match(stolenText(null), /not measured/);
});
