/** The load-test CLIs' flag parsing: bad values stop the run with a message naming the flag. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flagChoice, flagNumber, parseFlags } from '../loadtest/lib/args.js';
import { kSurfaces } from '../world/index.js';

test('--surface accepts a known surface and refuses anything else by name', () => {
  assert.equal(flagChoice(parseFlags(['--surface', 'reels']), 'surface', kSurfaces, 'feed'), 'reels');
  assert.equal(flagChoice(parseFlags([]), 'surface', kSurfaces, 'feed'), 'feed');
  assert.throws(() => flagChoice(parseFlags(['--surface=fed']), 'surface', kSurfaces, 'feed'), /--surface expects one of feed, stories, reels, marketplace, got "fed"/);
});

test('flags need values, and numbers must be numbers', () => {
  assert.throws(() => parseFlags(['--processes']), /--processes needs a value/);
  assert.throws(() => parseFlags(['quick']), /unexpected argument "quick"/);
  assert.equal(flagNumber(parseFlags(['--processes', '2']), 'processes', 1), 2);
  assert.throws(() => flagNumber(parseFlags(['--processes', 'two']), 'processes', 1), /processes/);
});
