/**
 * HPACK decoding (src/etcd/hpack.ts) against RFC 7541's own examples (Appendix C: requests and
 * responses on one connection, with and without Huffman coding, evictions from a 256-octet table),
 * its Huffman table (Appendix B), and malformed blocks refused with a reason.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HpackDecoder, HpackError, huffmanCode, literalHeaderBlock } from '../../src/etcd/hpack.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const REQUESTS: [string, string][][] = [
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ],
];

const RESPONSES: [string, string][][] = [
  [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ],
  [
    [':status', '307'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ],
  [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ['location', 'https://www.example.com'],
    ['content-encoding', 'gzip'],
    ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
  ],
];

describe('HPACK decoder', () => {
  it("derives RFC 7541's Huffman codes from the code lengths (Appendix B)", () => {
    // symbol: [code, bits] as printed in the RFC's table.
    const rfc: [number, number, number][] = [
      [0, 0x1ff8, 13],
      [32, 0x14, 6],
      [48, 0x0, 5],
      [97, 0x3, 5],
      [122, 0x7b, 7],
      [127, 0xffffffc, 28],
      [200, 0x3ffffe2, 26],
      [255, 0x3ffffee, 26],
      [256, 0x3fffffff, 30],
    ];
    for (const [symbol, code, bits] of rfc) assert.deepEqual(huffmanCode(symbol), [code, bits], `symbol ${symbol}`);
  });

  it('decodes the requests of Appendix C.3 (no Huffman) and C.4 (Huffman) on one connection each', () => {
    const plain = ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', '8286 84be 5808 6e6f 2d63 6163 6865', '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'];
    const huffman = ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'];
    for (const blocks of [plain, huffman]) {
      const d = new HpackDecoder();
      blocks.forEach((b, i) => assert.deepEqual(d.decode(hex(b)), REQUESTS[i]));
    }
  });

  it('decodes the responses of Appendix C.5 and C.6 with a 256-octet table, evicting as the RFC does', () => {
    const plain = [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768
       7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153
       444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
    ];
    const huffman = [
      '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
       3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ];
    for (const blocks of [plain, huffman]) {
      const d = new HpackDecoder(256);
      blocks.forEach((b, i) => assert.deepEqual(d.decode(hex(b)), RESPONSES[i]));
      // The third response evicted ":status 302" and the others: index 62 is now the newest entry.
      assert.deepEqual(d.decode(hex('be')), [['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1']]);
      assert.throws(() => d.decode(hex('c1')), /index 65 beyond the tables/);
    }
  });

  it('refuses malformed blocks, naming what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['80', /header index 0/],
      ['ff 80 01', /beyond the tables/],
      ['40 05 61', /runs past the header block/],
      ['40 81 ff 00', /invalid Huffman|padding/],
      // "a" (00011) padded with zeros instead of EOS's ones.
      ['00 01 61 81 18', /invalid Huffman padding/],
      ['3f e1 1f', /table size update to 4096|above the/],
      ['00', /ends inside a field/],
    ];
    for (const [block, message] of cases) {
      const d = new HpackDecoder(1024);
      assert.throws(
        () => d.decode(hex(block)),
        (err: unknown) => err instanceof HpackError && message.test(err.message),
        block,
      );
    }
  });

  it('writes literal blocks that touch no table, readable by any decoder state, lengths above 126 included', () => {
    const headers: [string, string][] = [
      [':path', '/etcdserverpb.KV/Txn'],
      ['x-long', 'v'.repeat(300)],
    ];
    const block = literalHeaderBlock(headers);
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(block), headers);
    assert.deepEqual(d.decode(block), headers);
    assert.throws(() => d.decode(hex('be')), /beyond the tables/, 'nothing was indexed');
  });
});
