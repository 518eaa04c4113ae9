/**
 * HPACK (RFC 7541), as much as h2-connection.ts needs: the decoder in full (etcd's Go server indexes
 * and Huffman-codes its response headers and trailers at will, so every representation can arrive),
 * and request header blocks written as literals that touch no table, so a block can be built once
 * and sent with every call, whatever the server's table holds.
 *
 * Names and values are kept as latin1 strings: HPACK counts octets, and latin1 maps each octet to
 * one character, so a header's size in the dynamic table is its string lengths plus 32.
 */

/** RFC 7541 Appendix A, index 1 to 61. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/**
 * Code length in bits of each symbol of HPACK's Huffman code (RFC 7541 Appendix B), octets 0-255
 * then EOS (256). The code is canonical (codes assigned in order of length, then symbol), so the
 * lengths alone define it; the test checks a few codes against the RFC's table.
 */
const HUFFMAN_CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6,
  6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5,
  5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23,
  21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24,
  21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const EOS = 256;

/** Canonical decoding tables: per length, the first code, how many codes, where their symbols start. */
interface Canonical {
  first: number[];
  count: number[];
  offset: number[];
  symbols: number[];
}

function canonical(lengths: readonly number[]): Canonical {
  const symbols = lengths.map((_, s) => s).sort((a, b) => (lengths[a] as number) - (lengths[b] as number) || a - b);
  const max = Math.max(...lengths);
  const first = new Array<number>(max + 1).fill(0);
  const count = new Array<number>(max + 1).fill(0);
  const offset = new Array<number>(max + 1).fill(0);
  for (const l of lengths) count[l] = (count[l] as number) + 1;
  let code = 0;
  let index = 0;
  for (let l = 1; l <= max; l++) {
    code = (code + (count[l - 1] as number)) << 1;
    first[l] = code;
    offset[l] = index;
    index += count[l] as number;
  }
  return { first, count, offset, symbols };
}

let huffman: Canonical | undefined;

/** The Huffman code of one symbol as [code, length]: for the test against the RFC's table. */
export function huffmanCode(symbol: number): [code: number, bits: number] {
  const h = (huffman ??= canonical(HUFFMAN_CODE_LENGTHS));
  const bits = HUFFMAN_CODE_LENGTHS[symbol] as number;
  const rank = h.symbols.indexOf(symbol) - (h.offset[bits] as number);
  return [(h.first[bits] as number) + rank, bits];
}

export class HpackError extends Error {
  override name = 'HpackError';
}

function huffmanDecode(bytes: Buffer): string {
  const h = (huffman ??= canonical(HUFFMAN_CODE_LENGTHS));
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  let ones = true;
  for (const byte of bytes) {
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >> b) & 1;
      code = (code << 1) | bit;
      bits++;
      ones &&= bit === 1;
      const rank = code - (h.first[bits] as number);
      if (bits >= 5 && rank >= 0 && rank < (h.count[bits] as number)) {
        const symbol = h.symbols[(h.offset[bits] as number) + rank] as number;
        if (symbol === EOS) throw new HpackError('Huffman-coded string holds EOS');
        out.push(symbol);
        code = 0;
        bits = 0;
        ones = true;
      } else if (bits > 30) throw new HpackError('invalid Huffman code');
    }
  }
  // What is left must be a prefix of EOS (all ones), shorter than an octet (RFC 7541, 5.2).
  if (bits > 7 || !ones) throw new HpackError('invalid Huffman padding');
  return Buffer.from(out).toString('latin1');
}

/** Decodes header blocks of one connection, in the order they arrive (the dynamic table is shared). */
export class HpackDecoder {
  /** Newest first, as the table is indexed. */
  private readonly table: [string, string][] = [];
  private size = 0;
  private capacity: number;
  private pos = 0;
  private block: Buffer = Buffer.alloc(0);

  /** `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE this side announced (4096 by default). */
  constructor(private readonly maxTableSize = 4096) {
    this.capacity = maxTableSize;
  }

  decode(block: Buffer): [string, string][] {
    this.block = block;
    this.pos = 0;
    const headers: [string, string][] = [];
    while (this.pos < block.length) {
      const first = block[this.pos] as number;
      if (first & 0x80) {
        headers.push(this.entry(this.integer(7)));
      } else if (first & 0x40) {
        const h = this.literal(6);
        this.insert(h);
        headers.push(h);
      } else if (first & 0x20) {
        // Only at the start of a block (RFC 7541, 4.2).
        if (headers.length > 0) throw new HpackError('dynamic table size update after a header field');
        const size = this.integer(5);
        if (size > this.maxTableSize) throw new HpackError(`dynamic table size update to ${size}, above the ${this.maxTableSize} allowed`);
        this.capacity = size;
        this.evict(0);
      } else {
        // Without indexing (0000) or never indexed (0001): neither touches the table.
        headers.push(this.literal(4));
      }
    }
    return headers;
  }

  private entry(index: number): [string, string] {
    if (index === 0) throw new HpackError('header index 0');
    const e = index <= STATIC_TABLE.length ? STATIC_TABLE[index - 1] : this.table[index - STATIC_TABLE.length - 1];
    if (!e) throw new HpackError(`header index ${index} beyond the tables`);
    return [e[0], e[1]];
  }

  private literal(prefixBits: number): [string, string] {
    const index = this.integer(prefixBits);
    const name = index === 0 ? this.string() : this.entry(index)[0];
    return [name, this.string()];
  }

  private insert(h: [string, string]): void {
    const size = h[0].length + h[1].length + 32;
    this.evict(size);
    // An entry larger than the table empties it and is not added (RFC 7541, 4.4).
    if (size <= this.capacity) {
      this.table.unshift(h);
      this.size += size;
    }
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    while (this.size + room > this.capacity && this.table.length > 0) {
      const [n, v] = this.table.pop() as [string, string];
      this.size -= n.length + v.length + 32;
    }
  }

  private integer(prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let value = this.byte() & mask;
    if (value < mask) return value;
    for (let shift = 0; ; shift += 7) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) break;
      if (shift > 28) throw new HpackError('integer too large');
    }
    return value;
  }

  private string(): string {
    const huffmanCoded = ((this.block[this.pos] as number) & 0x80) !== 0;
    const length = this.integer(7);
    if (this.pos + length > this.block.length) throw new HpackError('string runs past the header block');
    const bytes = this.block.subarray(this.pos, this.pos + length);
    this.pos += length;
    return huffmanCoded ? huffmanDecode(bytes) : bytes.toString('latin1');
  }

  private byte(): number {
    if (this.pos >= this.block.length) throw new HpackError('header block ends inside a field');
    return this.block[this.pos++] as number;
  }
}

function encodeInteger(value: number, prefixBits: number, firstByte: number, out: number[]): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | mask);
  let rest = value - mask;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

/** A dynamic table size update (RFC 7541, 6.3): owed at the start of the next block once the peer lowers its table size. */
export function tableSizeUpdate(size: number): Buffer {
  const out: number[] = [];
  encodeInteger(size, 5, 0x20, out);
  return Buffer.from(out);
}

/**
 * A header block of literals "without indexing" with new names (RFC 7541, 6.2.2): the server's
 * dynamic table is never touched, so the same block is valid on every request of a connection.
 */
export function literalHeaderBlock(headers: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of headers) {
    out.push(0x00);
    for (const s of [name, value]) {
      const bytes = Buffer.from(s, 'latin1');
      encodeInteger(bytes.length, 7, 0x00, out);
      out.push(...bytes);
    }
  }
  return Buffer.from(out);
}
