import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { renderEtcdConfig, type MemberIdentity } from '../../src/initializer/etcd-config.js';
import { CONFIG_KEYS, FEATURE_GATE_IN_3_6, KNOWN_MINORS, RENAMED_IN_3_6 } from '../../src/initializer/etcd-config-keys.js';
import { adaptEtcdConfig, configMinor } from '../../src/initializer/etcd-config-version.js';

const ALL_KEYS = [...new Set(KNOWN_MINORS.flatMap((m) => [...CONFIG_KEYS[m]]))].sort();
/** A value etcd 3.6 accepts for any key: the feature-gate switches need a boolean. */
const valueOf = (key: string): unknown => (FEATURE_GATE_IN_3_6[key] ? true : key === 'feature-gates' ? 'InitialCorruptCheck=true' : `v-${key}`);

describe('etcd config template per etcd minor', () => {
  for (const minor of KNOWN_MINORS) {
    it(`etcd ${minor}: every key of any minor is kept, renamed to a key ${minor} reads, or dropped with a note`, () => {
      for (const key of ALL_KEYS) {
        const { doc, notes } = adaptEtcdConfig({ [key]: valueOf(key) }, minor);
        for (const out of Object.keys(doc)) assert.ok(CONFIG_KEYS[minor].has(out), `${key} became ${out}, which etcd ${minor} does not read`);
        const kept = key in doc && notes.length === 0;
        assert.ok(kept || notes.length > 0, `${key} vanished without a note for etcd ${minor}`);
        for (const n of notes) assert.ok(n.why.length > 0 && n.key.includes(key === 'feature-gates' ? 'feature-gates' : key));
      }
    });

    it(`etcd ${minor}: its own keys pass unchanged (3.6: but for the experimental names it renamed)`, () => {
      for (const key of CONFIG_KEYS[minor]) {
        const { doc, notes } = adaptEtcdConfig({ [key]: valueOf(key) }, minor);
        if (minor === '3.6' && (RENAMED_IN_3_6[key] || FEATURE_GATE_IN_3_6[key])) {
          assert.equal(notes[0]?.action, 'renamed', key);
          assert.ok(!(key in doc), key);
        } else {
          assert.deepEqual(notes, [], key);
          assert.deepEqual(doc, { [key]: valueOf(key) }, key);
        }
      }
    });
  }

  it('3.6 drops the v2 store, saying why', () => {
    const { doc, notes } = adaptEtcdConfig({ 'enable-v2': true, 'experimental-enable-v2v3': '/v2', 'quota-backend-bytes': 1 }, '3.6');
    assert.deepEqual(doc, { 'quota-backend-bytes': 1 });
    assert.deepEqual(
      notes.map((n) => [n.key, n.action, n.why]),
      [
        ['enable-v2', 'dropped', 'etcd 3.6 has no v2 store'],
        ['experimental-enable-v2v3', 'dropped', 'etcd 3.6 has no v2 store'],
      ],
    );
    assert.ok(adaptEtcdConfig({ 'enable-v2': true }, '3.5').doc['enable-v2']);
  });

  it('3.6 renames experimental settings and turns switches into feature gates; explicit gates win', () => {
    const { doc } = adaptEtcdConfig(
      {
        'experimental-watch-progress-notify-interval': '5s',
        'experimental-initial-corrupt-check': true,
        'experimental-compact-hash-check-enabled': false,
        'experimental-enable-lease-checkpoint': true,
        'feature-gates': 'LeaseCheckpoint=false',
      },
      '3.6',
    );
    assert.deepEqual(doc, { 'watch-progress-notify-interval': '5s', 'feature-gates': 'InitialCorruptCheck=true,CompactHashCheck=false,LeaseCheckpoint=false' });
  });

  it('3.6 drops a switch that is not a boolean (etcd 3.6 panics reading it)', () => {
    const { doc, notes } = adaptEtcdConfig({ 'experimental-initial-corrupt-check': 'yes' }, '3.6');
    assert.deepEqual(doc, {});
    assert.match(notes[0]?.why ?? '', /true or false/);
  });

  it('3.6 keeps the new name when a template sets both', () => {
    const { doc, notes } = adaptEtcdConfig({ 'experimental-compaction-batch-limit': 10, 'compaction-batch-limit': 20 }, '3.6');
    assert.deepEqual(doc, { 'compaction-batch-limit': 20 });
    assert.equal(notes[0]?.key, 'experimental-compaction-batch-limit');
  });

  it('a 3.6 template read by 3.5 gets the experimental names back; gates become switches where 3.5 has them', () => {
    const { doc, notes } = adaptEtcdConfig({ 'watch-progress-notify-interval': '5s', 'feature-gates': 'InitialCorruptCheck=true,SetMemberLocalAddr=true', 'max-learners': 2 }, '3.5');
    assert.deepEqual(doc, { 'experimental-watch-progress-notify-interval': '5s', 'experimental-initial-corrupt-check': true });
    assert.deepEqual(
      notes.filter((n) => n.action === 'dropped').map((n) => n.key),
      ['feature-gates: SetMemberLocalAddr', 'max-learners'],
    );
  });

  it('3.4 drops what only 3.5 added (v2-deprecation, the compact hash check)', () => {
    const { doc, notes } = adaptEtcdConfig({ 'v2-deprecation': 'not-yet', 'experimental-compact-hash-check-enabled': true, 'experimental-enable-lease-checkpoint': true }, '3.4');
    assert.deepEqual(doc, { 'experimental-enable-lease-checkpoint': true });
    assert.deepEqual(
      notes.map((n) => n.key),
      ['v2-deprecation', 'experimental-compact-hash-check-enabled'],
    );
  });

  it('TLS flags at the top level are named with where a config file takes them', () => {
    for (const minor of KNOWN_MINORS) {
      const { doc, notes } = adaptEtcdConfig({ 'cert-file': '/c', 'peer-key-file': '/k', 'client-transport-security': { 'cert-file': '/c' } }, minor);
      assert.deepEqual(doc, { 'client-transport-security': { 'cert-file': '/c' } });
      assert.match(notes[0]?.why ?? '', /under client-transport-security/);
      assert.match(notes[1]?.why ?? '', /under peer-transport-security/);
    }
  });

  it('unknown keys are dropped by name; minors outside 3.4-3.6 are read as the nearest known', () => {
    assert.equal(adaptEtcdConfig({ 'no-such-key': 1 }, '3.5').notes[0]?.why, 'etcd 3.5 has no config key no-such-key');
    assert.equal(configMinor('3.7'), '3.6');
    assert.equal(configMinor('4.0'), '3.6');
    assert.equal(configMinor('3.3'), '3.4');
    assert.equal(configMinor('3.5'), '3.5');
  });
});

describe('renderEtcdConfig for a target etcd', () => {
  const identity: MemberIdentity = {
    name: 'm1',
    dataDir: '/d',
    initialClusterToken: 't',
    initialAdvertisePeerUrls: ['http://h:2380'],
    advertiseClientUrls: ['http://h:2379'],
    listenPeerUrls: ['http://0.0.0.0:2380'],
    listenClientUrls: ['http://0.0.0.0:2379'],
  };
  const start = { state: 'new' as const, initialCluster: [{ name: 'm1', peerURL: 'http://h:2380' }] };

  it('passes --max-learners to 3.6 only, over the template', () => {
    const six = renderEtcdConfig(identity, start, { 'max-learners': 3 }, { minor: '3.6', maxLearners: 2 });
    assert.equal(parse(six.yaml)['max-learners'], 2);
    assert.deepEqual(
      six.notes.map((n) => n.key),
      ['max-learners'],
    );
    const five = renderEtcdConfig(identity, start, {}, { minor: '3.5', maxLearners: 2 });
    assert.equal(parse(five.yaml)['max-learners'], undefined);
  });

  it('names every renamed or dropped key in a header comment; identity always the initializer’s', () => {
    const { yaml } = renderEtcdConfig(identity, start, { 'enable-v2': true, name: 'other', 'force-new-cluster': true }, { minor: '3.6' });
    assert.match(yaml, /^# For etcd 3\.6: the template's\n# {3}enable-v2 dropped: etcd 3\.6 has no v2 store\n/);
    const doc = parse(yaml);
    assert.equal(doc.name, 'm1');
    assert.equal(doc['enable-v2'], undefined);
    assert.equal(doc['force-new-cluster'], undefined);
  });

  it('without a known target the template passes unchecked', () => {
    const { yaml, notes } = renderEtcdConfig(identity, start, { 'enable-v2': true });
    assert.deepEqual(notes, []);
    assert.equal(parse(yaml)['enable-v2'], true);
  });
});
