import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../src/config/units.js';

describe('durations', () => {
  it('reads Go-style durations as etcd flags write them', () => {
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1_500);
  });
  it('rejects what is not a duration', () => {
    for (const bad of ['', '10', '10x', 's', '-5s', '5 s', '1d', 'ten seconds', '10s5']) assert.equal(parseDuration(bad), undefined, bad);
  });
  it('formats and parses back to the same value', () => {
    fc.assert(fc.property(fc.nat(10 ** 9), (ms) => parseDuration(formatDuration(ms)) === ms));
  });
});

describe('sizes', () => {
  it('reads binary and decimal units', () => {
    assert.equal(parseSize('4096'), 4096);
    assert.equal(parseSize('1KiB'), 1024);
    assert.equal(parseSize('32MiB'), 32 * 2 ** 20);
    assert.equal(parseSize('1GB'), 1e9);
    assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(parseSize('10mib'), 10 * 2 ** 20);
  });
  it('rejects what is not a size', () => {
    for (const bad of ['', 'MiB', '10XB', '-1', '1e3', 'lots']) assert.equal(parseSize(bad), undefined, bad);
  });
  it('formats and parses back to the same value', () => {
    fc.assert(fc.property(fc.nat(2 ** 40), (n) => parseSize(formatSize(n)) === n));
  });
});
