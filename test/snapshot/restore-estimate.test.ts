import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readReplaySamples, recordReplaySample, replayRatesFile, sampleOf, type ReplaySample } from '../../src/restore/replay-rates.js';
import { backupStateOf } from '../../src/snapshot/backup-state.js';
import {
  DEFAULT_REPLAY_RATE,
  estimateRestore,
  FULL_BYTES_PER_SECOND,
  fullPart,
  fullSnapshotForObjective,
  replayRate,
  STARTUP_SECONDS,
  type ObjectiveCheck,
} from '../../src/snapshot/restore-estimate.js';

function sample(revisions: number, replayMs: number): ReplaySample {
  return { at: '2026-01-01T00:00:00.000Z', kind: 'restore', revisions, events: revisions, replayMs, fullDbBytes: 1 << 20, fullMs: 3000 };
}

describe('restore estimate', () => {
  it('uses the default rate, and says so, until a restore of enough revisions was measured', () => {
    for (const samples of [[], [sample(999, 100)]]) {
      const rate = replayRate(samples);
      assert.equal(rate.revisionsPerSecond, DEFAULT_REPLAY_RATE);
      assert.equal(rate.measured, false);
      assert.match(rate.source, /default/);
    }
  });

  it('takes the slowest of the recent measured rates', () => {
    const rate = replayRate([sample(10_000, 10_000), sample(30_000, 10_000), sample(20_000, 10_000)]);
    assert.deepEqual([rate.revisionsPerSecond, rate.measured], [1000, true]);
    // Only the last five count: an old slow run no longer weighs once five newer ones exist.
    const newer = replayRate([sample(1_000, 10_000), ...Array.from({ length: 5 }, () => sample(30_000, 10_000))]);
    assert.equal(newer.revisionsPerSecond, 3000);
  });

  it('is the fixed part plus the revisions since the full snapshot at the rate', () => {
    const e = estimateRestore({ fullRevision: 1000, fullDbBytes: 100 * 1024 * 1024, lastRevision: 61_000 }, { revisionsPerSecond: 2000, measured: true, source: 'x' });
    assert.equal(e.revisions, 60_000);
    assert.equal(e.replaySeconds, 30);
    assert.equal(e.fullSeconds, Math.round((STARTUP_SECONDS + (100 * 1024 * 1024) / FULL_BYTES_PER_SECOND) * 10) / 10);
    assert.equal(e.seconds, Math.round((e.fullSeconds + 30) * 10) / 10);
    // A chain that ends at its full snapshot replays nothing.
    assert.equal(estimateRestore({ fullRevision: 5, fullDbBytes: 0, lastRevision: 5 }, replayRate([])).replaySeconds, 0);
  });

  it("times the fixed part from this member's restores of a comparable db, scaled up by size, never down", () => {
    const MiB = 1024 * 1024;
    const timed = (fullDbBytes: number, fullMs: number): ReplaySample => ({ ...sample(10_000, 5_000), fullDbBytes, fullMs });
    const defaults = STARTUP_SECONDS + (100 * MiB) / FULL_BYTES_PER_SECOND;
    // Nothing measured, or only dbs under a quarter of this one: the defaults, said so.
    for (const samples of [[], [timed(20 * MiB, 1_500)]]) {
      const f = fullPart(100 * MiB, samples);
      assert.equal(f.seconds, defaults);
      assert.match(f.source, /^default/);
    }
    assert.equal(fullPart(100 * MiB, [timed(100 * MiB, 3_400)]).seconds, 3.4);
    assert.equal(fullPart(200 * MiB, [timed(100 * MiB, 3_400)]).seconds, 6.8, 'a db twice as big: twice the time, the start included');
    assert.equal(fullPart(40 * MiB, [timed(100 * MiB, 3_400)]).seconds, 3.4, 'a smaller db is not assumed faster');
    const slowest = fullPart(100 * MiB, [timed(100 * MiB, 3_400), timed(100 * MiB, 5_000), timed(120 * MiB, 3_000)]);
    assert.equal(slowest.seconds, 5);
    assert.match(slowest.source, /slowest of the last 3/);
    // In the estimate, with the replay on top.
    const e = estimateRestore({ fullRevision: 1000, fullDbBytes: 100 * MiB, lastRevision: 21_000 }, { revisionsPerSecond: 2000, measured: true, source: 'x' }, [timed(100 * MiB, 3_400)]);
    assert.deepEqual([e.fullSeconds, e.replaySeconds, e.seconds], [3.4, 10, 13.4]);
    assert.match(e.fullSource, /measured on this member/);
  });
});

describe('full snapshot for the restore time objective', () => {
  const rate = { revisionsPerSecond: 1000, measured: false, source: 'default' };
  const base = (revisions: number, over: Partial<ObjectiveCheck> = {}): ObjectiveCheck => ({
    estimate: estimateRestore({ fullRevision: 100, fullDbBytes: 0, lastRevision: 100 + revisions }, rate),
    objectiveMs: 10_000,
    minIntervalMs: 60_000,
    lastFullAtMs: 0,
    nowMs: 120_000,
    fullRunning: false,
    ...over,
  });

  it('is due once the estimate passes the objective, with the reason in words', () => {
    assert.equal(fullSnapshotForObjective(base(6_000)), undefined, '3 s + 6 s is within 10 s');
    const reason = fullSnapshotForObjective(base(8_000));
    assert.match(reason ?? '', /restore estimate 11 s passes the restore time objective of 10 s: 8000 revisions/);
  });

  it('waits for the minimum interval after the last full snapshot, and never runs beside one', () => {
    assert.equal(fullSnapshotForObjective(base(8_000, { lastFullAtMs: 100_000 })), undefined);
    assert.ok(fullSnapshotForObjective(base(8_000, { lastFullAtMs: 60_000 })));
    assert.ok(fullSnapshotForObjective(base(8_000, { lastFullAtMs: undefined })));
    assert.equal(fullSnapshotForObjective(base(8_000, { fullRunning: true })), undefined);
  });

  it('is never due when disabled, without a chain, or when the full snapshot alone passes the objective', () => {
    assert.equal(fullSnapshotForObjective(base(80_000, { objectiveMs: 0 })), undefined);
    assert.equal(fullSnapshotForObjective(base(80_000, { estimate: undefined })), undefined);
    // A new full snapshot could not bring 3 s of fixed cost under 2 s: it would only repeat.
    assert.equal(fullSnapshotForObjective(base(80_000, { objectiveMs: 2_000 })), undefined);
  });
});

describe('replay rates file', () => {
  it('lives beside the data dir, keeps the newest ten samples, and reads a bad file as none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ebs-rates-'));
    try {
      const file = replayRatesFile(join(dir, 'data'), 'm1');
      assert.equal(file, join(dir, 'etcd-backup-sidecar-m1.replay-rates.json'));
      assert.deepEqual(await readReplaySamples(file), { samples: [] });
      for (let i = 1; i <= 12; i++) await recordReplaySample(file, sample(i * 1000, 1000));
      const { samples } = await readReplaySamples(file);
      assert.deepEqual(
        samples.map((s) => s.revisions),
        [3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((i) => i * 1000),
      );
      writeFileSync(file, '{"samples": [{"at": 1}]}');
      const bad = await readReplaySamples(file);
      assert.deepEqual(bad.samples, []);
      assert.match(bad.problem ?? '', /samples/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('samples a restore that replayed, and nothing of one that did not', () => {
    const timings = { fetchFullMs: 100, restoreFullMs: 2000, replayMs: 5000, finalizeMs: 400 };
    const s = sampleOf({ revision: 10_100, fullRevision: 100, fullDbBytes: 42, eventsApplied: 12_000, timings }, 'drill', new Date(0));
    assert.deepEqual(s, { at: '1970-01-01T00:00:00.000Z', kind: 'drill', revisions: 10_000, events: 12_000, replayMs: 5000, fullDbBytes: 42, fullMs: 2500 });
    assert.equal(sampleOf({ revision: 100, fullRevision: 100, fullDbBytes: 42, eventsApplied: 0, timings: { ...timings, replayMs: 0 } }, 'restore', new Date(0)), undefined);
  });
});

describe('the estimate in the backup state', () => {
  it('carries the objective, and says when the full snapshot alone passes it', () => {
    const estimate = estimateRestore({ fullRevision: 10, fullDbBytes: 0, lastRevision: 5010 }, replayRate([]));
    const view = (objectiveMs: number): ReturnType<typeof backupStateOf>['restoreEstimate'] =>
      backupStateOf({ problem: undefined, lastFull: undefined, deltaState: undefined, restoreEstimate: estimate, restoreTimeObjectiveMs: objectiveMs }).restoreEstimate;
    assert.equal(view(60_000)?.objectiveSeconds, 60);
    assert.equal(view(60_000)?.note, undefined);
    assert.match(view(2_000)?.note ?? '', /full snapshot alone takes about 3 s, not less than the objective of 2 s/);
  });
});
