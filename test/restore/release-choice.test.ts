import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseRelease, type ReleaseFacts, type RecordedVersion } from '../../src/restore/release-choice.js';

const MINORS = ['3.4', '3.5', '3.6'] as const;

/** Every subset of `items`. */
function subsets<T>(items: readonly T[]): T[][] {
  return items.reduce<T[][]>((acc, x) => [...acc, ...acc.map((s) => [...s, x])], [[]]);
}

const minorNumber = (v: string): number => Number(/^v?\d+\.(\d+)/.exec(v)?.[1]);

/** Chains as a bucket can hold them: nothing recorded, one release, and across an upgrade (in either order of listing). */
const CHAINS: RecordedVersion[][] = [
  [],
  [{ name: 'full', version: '3.5.21' }],
  [{ name: 'full', version: '3.6.5' }],
  [{ name: 'full', version: '3.4.23' }],
  [
    { name: 'full', version: '3.5.21' },
    { name: 'delta-1', version: '3.5.21' },
    { name: 'delta-2', version: '3.6.5' },
  ],
  [
    { name: 'delta-2', version: '3.6.5' },
    { name: 'full', version: '3.5.21' },
  ],
  [
    { name: 'full', version: '3.4.23' },
    { name: 'delta-1', version: '3.5.21' },
  ],
];
const STORAGE = [undefined, '3.6.0', '3.7.0'];
const CONFIGURED = [undefined, '3.4', '3.5', '3.6'];

describe('the etcd release a restore runs', () => {
  it('over every chain, db, bin dir and --etcd-version: the backups decide, then --etcd-version, then the newest; never an absent release', () => {
    let cases = 0;
    for (const recorded of CHAINS)
      for (const storageVersion of STORAGE)
        for (const available of subsets(MINORS))
          for (const configured of CONFIGURED) {
            cases++;
            const facts: ReleaseFacts = { recorded, storageVersion, available, configured };
            const got = chooseRelease(facts);
            const what = JSON.stringify(facts);
            // What the backups need, stated apart from the code: the newest recorded minor, else the db's.
            const newestRecorded = recorded.length > 0 ? Math.max(...recorded.map((r) => minorNumber(r.version))) : undefined;
            const needed = newestRecorded ?? (storageVersion !== undefined ? minorNumber(storageVersion) : undefined);
            if (needed !== undefined) {
              const minor = `3.${needed}`;
              if (available.includes(minor as (typeof MINORS)[number])) {
                assert.ok('minor' in got && got.minor === minor && got.by === 'backup', what);
                assert.equal(got.warning !== undefined, configured !== undefined && configured !== minor, `a disagreeing --etcd-version is warned about: ${what}`);
              } else if (available.includes(`3.${needed + 1}` as (typeof MINORS)[number]) && (configured === undefined || configured === `3.${needed + 1}`)) {
                // One minor up is etcd's upgrade step: it restores, and says so.
                assert.ok('minor' in got && got.minor === `3.${needed + 1}` && got.by === 'backup' && got.upgradedFrom === minor, what);
                assert.match(got.warning ?? '', new RegExp(`restoring etcd ${minor.replace('.', '\\.')} backups with etcd 3\\.${needed + 1}`), what);
              } else {
                assert.ok('refused' in got, `the backups' release is missing, so refused: ${what}`);
                assert.equal(got.needed, minor, what);
                assert.deepEqual(got.found, [...available], what);
                assert.match(got.refused, new RegExp(`need etcd ${minor.replace('.', '\\.')} `), what);
                for (const m of available) assert.ok(got.refused.includes(`v${m}`), `the refusal names the folders found: ${what}`);
              }
            } else if (configured !== undefined) {
              if (available.includes(configured as (typeof MINORS)[number])) assert.ok('minor' in got && got.minor === configured && got.by === 'etcd-version', what);
              else assert.ok('refused' in got && got.needed === configured, what);
            } else if (available.length > 0) {
              assert.ok('minor' in got && got.minor === available[available.length - 1] && got.by === 'newest', what);
            } else {
              assert.ok('refused' in got && /no etcd release/.test(got.refused), what);
            }
            // The safety rule whatever the path: never older than any release the chain records.
            if ('minor' in got) {
              assert.ok(available.includes(got.minor as (typeof MINORS)[number]), what);
              for (const r of recorded) assert.ok(minorNumber(got.minor) >= minorNumber(r.version), what);
              if (needed !== undefined) assert.ok(minorNumber(got.minor) - needed <= 1, `never more than one minor above the backups: ${what}`);
            }
          }
    assert.equal(cases, CHAINS.length * STORAGE.length * 8 * CONFIGURED.length);
  });

  it('replays a chain that crosses the upgrade 3.5 -> 3.6 with 3.6, and refuses it with 3.5 alone, naming both', () => {
    const chain = [
      { name: 'Full-00000000-00000100', version: '3.5.21' },
      { name: 'Incr-00000101-00000200', version: '3.5.21' },
      { name: 'Incr-00000201-00000300', version: '3.6.5' },
    ];
    const upgraded = chooseRelease({ recorded: chain, available: ['3.5', '3.6'], configured: '3.5' });
    assert.ok('minor' in upgraded);
    assert.equal(upgraded.minor, '3.6');
    assert.match(upgraded.reason, /Incr-00000201-00000300 was taken from etcd 3\.6\.5/);
    assert.match(upgraded.warning ?? '', /--etcd-version says the cluster runs etcd 3\.5/);
    const refused = chooseRelease({ recorded: chain, available: ['3.5'] });
    assert.ok('refused' in refused);
    assert.equal(
      refused.refused,
      'the backups need etcd 3.6 (Incr-00000201-00000300 was taken from etcd 3.6.5) but --etcd-bin-dir holds v3.5: add the v3.6 tools; another release could write a data dir etcd 3.6 cannot open, or open one it cannot read',
    );
  });

  it("reads gardener's full snapshot by its db: storageVersion 3.6 needs 3.6, none is 3.5 or older and unknown", () => {
    const gardener36 = chooseRelease({ recorded: [], storageVersion: '3.6.0', available: ['3.5', '3.6'], configured: '3.5' });
    assert.ok('minor' in gardener36 && gardener36.minor === '3.6' && gardener36.by === 'backup');
    const gardener35 = chooseRelease({ recorded: [], available: ['3.5', '3.6'], configured: '3.5' });
    assert.ok('minor' in gardener35 && gardener35.minor === '3.5' && gardener35.by === 'etcd-version');
    assert.match(gardener35.reason, /record no etcd version/);
  });

  it('refuses versions that are not versions, naming the object', () => {
    const bad = chooseRelease({ recorded: [{ name: 'Incr-1', version: 'latest' }], available: ['3.6'] });
    assert.ok('refused' in bad && /Incr-1 records etcd version "latest"/.test(bad.refused));
    const badDb = chooseRelease({ recorded: [], storageVersion: 'x', available: ['3.6'] });
    assert.ok('refused' in badDb && /storage version "x"/.test(badDb.refused));
    const badFlag = chooseRelease({ recorded: [], available: ['3.6'], configured: 'six' });
    assert.ok('refused' in badFlag && /--etcd-version six/.test(badFlag.refused));
  });

  it('takes a single release by the version its etcd prints (3.6.5 is minor 3.6)', () => {
    const single = chooseRelease({ recorded: [{ name: 'full', version: '3.6.1' }], available: ['3.6.5'] });
    assert.ok('minor' in single && single.minor === '3.6');
  });
});
