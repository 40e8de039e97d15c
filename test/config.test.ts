import { test } from 'node:test';
import os from 'node:os';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../src/config.js';

test('defaults match the documentation', () => {
  const c = loadConfig({});
  assert.equal(c.port, 8080);
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.adminHost, '127.0.0.1');
  assert.equal(c.maxCandidates, 2000);
  assert.equal(c.maxHistory, 4096);
  assert.equal(c.bodyLimitBytes, 1024 * 1024);
  assert.deepEqual(c.executionProviders, ['cpu']);
  assert.ok(Object.isFrozen(c));
});

test('a bad value stops start-up with a message naming the variable', () => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /PORT: expected an integer/],
    [{ PORT: '70000' }, /PORT: expected 0\.\.65535/],
    [{ POOL_SIZE: '0' }, /POOL_SIZE/],
    [{ BATCH_MAX_DELAY_MS: 'soon' }, /BATCH_MAX_DELAY_MS: expected a number/],
    [{ EXECUTION_PROVIDERS: 'cuda,tpu' }, /EXECUTION_PROVIDERS: unknown provider "tpu"/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ ADMIN_TOKEN: 'short' }, /ADMIN_TOKEN: must be at least 16/],
    [{ WATCH_REPO: 'maybe' }, /WATCH_REPO: expected true\/false/],
    [{ CANARY_MAX_ERROR_RATE: '2' }, /CANARY_MAX_ERROR_RATE/],
    // Decimal notation only: Number() reads these as 16 and 5.
    [{ BATCH_MAX_DELAY_MS: '0x10' }, /BATCH_MAX_DELAY_MS: expected a number, got "0x10"/],
    [{ ADMISSION_WAIT_MS: '0b101' }, /ADMISSION_WAIT_MS: expected a number/],
    // Timer delays past 2^31-1 ms fire after 1 ms in Node: 728 rescans a second, an instant forced exit.
    [{ RESCAN_INTERVAL_MS: '2147483648' }, /RESCAN_INTERVAL_MS: expected 100\.\.2147483647/],
    [{ SHUTDOWN_GRACE_MS: '3000000000' }, /SHUTDOWN_GRACE_MS: expected 0\.\.2147483647/],
    [{ METRICS_VERSION_GRACE_MS: '2147483648' }, /METRICS_VERSION_GRACE_MS/],
    [{ DEFAULT_DEADLINE_MS: '60001' }, /DEFAULT_DEADLINE_MS: expected 1\.\.60000/],
    // A queue bound below one allowed request refuses such requests whenever anything else is queued.
    [{ MAX_QUEUED_CANDIDATES: '1999' }, /MAX_QUEUED_CANDIDATES: must be at least MAX_CANDIDATES \(2000\)/],
    [{ MAX_CANDIDATES: '500', MAX_QUEUED_CANDIDATES: '400' }, /MAX_QUEUED_CANDIDATES: must be at least MAX_CANDIDATES \(500\)/],
  ];
  for (const [env, message] of bad) assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && message.test(e.message), JSON.stringify(env));
  // Still read: decimals, exponents, the largest timer delay, a queue bound equal to one request.
  const fine = loadConfig({ BATCH_MAX_DELAY_MS: '0.25', ADMISSION_WAIT_MS: '1e1', RESCAN_INTERVAL_MS: '2147483647', MAX_CANDIDATES: '500', MAX_QUEUED_CANDIDATES: '500' });
  assert.deepEqual([fine.batchMaxDelayMs, fine.admissionWaitMs, fine.rescanIntervalMs, fine.maxQueuedCandidates], [0.25, 10, 2147483647, 500]);
});

test('providers keep their preference order and always end with cpu', () => {
  assert.deepEqual(loadConfig({ EXECUTION_PROVIDERS: 'cuda, webgpu' }).executionProviders, ['cuda', 'webgpu', 'cpu']);
  assert.deepEqual(loadConfig({ EXECUTION_PROVIDERS: 'cpu,cuda' }).executionProviders, ['cpu', 'cuda']);
});

test('HTTP_PROCESSES shares the cores and the in-flight budget out among the processes', () => {
  const cores = os.availableParallelism();
  const single = loadConfig({});
  assert.equal(single.httpProcesses, 1);
  assert.equal(single.maxInflightRequests, 4 * cores, 'a host budget of 4 per core');
  const two = loadConfig({ HTTP_PROCESSES: '2' });
  assert.equal(two.httpProcesses, 2);
  assert.equal(two.maxInflightRequests, Math.max(2, Math.ceil((4 * cores) / 2)), 'the host budget split in two');
  assert.ok(two.poolSize >= 1 && two.poolSize <= single.poolSize);
  assert.equal(loadConfig({ HTTP_PROCESSES: '64' }).maxInflightRequests, Math.max(2, Math.ceil((4 * cores) / 64)), 'never below 2');
  assert.equal(loadConfig({ HTTP_PROCESSES: '2', MAX_INFLIGHT_REQUESTS: '40', POOL_SIZE: '3' }).maxInflightRequests, 40, 'explicit values win');
  assert.throws(() => loadConfig({ HTTP_PROCESSES: '0' }), /HTTP_PROCESSES/);
});

test('parse turns are bounded to 4 ms by default, and PARSE_TURN_BUDGET_MS=0 turns the queue off', () => {
  assert.equal(loadConfig({}).parseTurnBudgetMs, 4);
  assert.equal(loadConfig({ PARSE_TURN_BUDGET_MS: '0' }).parseTurnBudgetMs, 0);
  assert.equal(loadConfig({ PARSE_TURN_BUDGET_MS: '2.5' }).parseTurnBudgetMs, 2.5);
  assert.throws(() => loadConfig({ PARSE_TURN_BUDGET_MS: '-1' }), /PARSE_TURN_BUDGET_MS/);
});
