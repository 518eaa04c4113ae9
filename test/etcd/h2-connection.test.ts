/**
 * The replay's HTTP/2 client (src/etcd/h2-connection.ts) against a real HTTP/2 server, Node's
 * (nghttp2): header blocks it encodes at will (Huffman, a dynamic table that fills and evicts over
 * hundreds of calls on one connection) decoded exactly; bodies far beyond the server's small
 * windows and frame size sent and received; and each way a call can end without an answer (a
 * stream reset by the server, a GOAWAY, a dropped connection, a cancel from this side) failing the
 * calls it concerns and only those.
 */
import assert from 'node:assert/strict';
import { createServer, constants, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { H2Connection, H2Error, type H2Call, type H2Response, type Header } from '../../src/etcd/h2-connection.js';
import { literalHeaderBlock } from '../../src/etcd/hpack.js';

/** Headers a call asks the server to answer with, carried in the request as JSON. */
interface Wanted {
  headers: Header[];
  trailers: Header[];
}

const requestBlock = (path: string, extra: Header[] = []): Buffer => literalHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'test'], ...extra]);

const call = (c: H2Connection, block: Buffer, body: Buffer): { id: number; done: Promise<H2Response> } => {
  let id = 0;
  const done = new Promise<H2Response>((resolve, reject) => {
    id = c.request(block, body, (err, res) => (err ? reject(err) : resolve(res as H2Response))).id;
  });
  return { id, done };
};

const get = (headers: Header[], name: string): string | undefined => headers.find(([n]) => n === name)?.[1];

describe('HTTP/2 client against node:http2', { timeout: 120_000 }, () => {
  let server: Http2Server;
  let port: number;
  const held: ServerHttp2Stream[] = [];
  const closedWith = new Map<string, number>();
  const sessions = new Set<ServerHttp2Session>();

  before(async () => {
    // Small windows and frames on the server's side: this client's sends must wait for WINDOW_UPDATEs.
    server = createServer({ settings: { initialWindowSize: 1_000, maxFrameSize: 16_384 } });
    server.on('session', (session) => sessions.add(session));
    server.on('stream', (stream, headers) => {
      // Resets and drops are what these tests make: the server's streams report them as errors.
      stream.on('error', () => {});
      const path = headers[':path'] as string;
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('close', () => closedWith.set(path, stream.rstCode));
      if (path === '/hold') {
        held.push(stream);
        return;
      }
      if (path === '/reset') return stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      if (path === '/drop') return stream.session?.destroy();
      if (path === '/goaway') {
        stream.session?.goaway(Number(headers['x-code'] ?? constants.NGHTTP2_NO_ERROR), Number(headers['x-last']));
        return;
      }
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        if (path === '/echo') {
          stream.respond({ ':status': 200 });
          stream.end(body);
          return;
        }
        if (path === '/big') {
          stream.respond({ ':status': 200 });
          stream.end(Buffer.alloc(Number(headers['x-bytes']), 5));
          return;
        }
        // /headers: answer with the headers and trailers the call asked for.
        const wanted = JSON.parse(headers['x-want'] as string) as Wanted;
        stream.respond({ ':status': 200, ...Object.fromEntries(wanted.headers) }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers(Object.fromEntries(wanted.trailers)));
        stream.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const s of held) s.destroy();
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('decodes the headers and trailers of 300 calls on one connection as the server sent them (Huffman, indexed, evicted)', async () => {
    const name = fc.stringMatching(/^x-[a-z0-9-]{1,20}$/);
    const value = fc.stringMatching(/^[!-~]([ -~]{0,198}[!-~])?$/);
    const fields = fc.uniqueArray(fc.tuple(name, value), { minLength: 0, maxLength: 12, selector: ([n]) => n });
    const c = new H2Connection('127.0.0.1', port);
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ headers: fields, trailers: fields }), { minLength: 1, maxLength: 20 }), async (wants) => {
          // Calls of one run are in flight together, so their header blocks interleave in the table.
          const answers = await Promise.all(wants.map((w) => call(c, requestBlock('/headers', [['x-want', JSON.stringify(w)]]), Buffer.from('b')).done));
          answers.forEach((res, i) => {
            const w = wants[i] as Wanted;
            assert.equal(get(res.headers, ':status'), '200');
            assert.deepEqual(
              res.headers.filter(([n]) => n.startsWith('x-')),
              w.headers,
            );
            assert.deepEqual(res.trailers ?? [], w.trailers);
            assert.equal(res.body.toString(), 'b');
          });
        }),
        { numRuns: 30 },
      );
      assert.ok(c.usable);
      assert.equal(c.pending, 0);
    } finally {
      c.close();
    }
  });

  it('sends 3 MB through a 1,000-octet window and receives 40 MB, beyond its own connection window', async () => {
    const c = new H2Connection('127.0.0.1', port);
    try {
      const body = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
      const [echo, other] = await Promise.all([call(c, requestBlock('/echo'), body).done, call(c, requestBlock('/echo'), Buffer.from('small')).done]);
      assert.ok(echo.body.equals(body), 'the body came back intact');
      assert.equal(other.body.toString(), 'small');
      const big = await call(c, requestBlock('/big', [['x-bytes', String(40 * 1024 * 1024)]]), Buffer.alloc(0)).done;
      assert.equal(big.body.length, 40 * 1024 * 1024);
      assert.ok(big.body.every((b) => b === 5));
    } finally {
      c.close();
    }
  });

  it("fails only the call whose stream the server resets, with the server's error code", async () => {
    const c = new H2Connection('127.0.0.1', port);
    try {
      const [reset, fine] = await Promise.allSettled([call(c, requestBlock('/reset'), Buffer.from('x')).done, call(c, requestBlock('/echo'), Buffer.from('y')).done]);
      assert.equal(reset.status, 'rejected');
      assert.ok(reset.reason instanceof H2Error && reset.reason.code === constants.NGHTTP2_INTERNAL_ERROR, String(reset.reason));
      assert.match((reset.reason as Error).message, /reset the stream \(INTERNAL_ERROR\)/);
      assert.equal(fine.status === 'fulfilled' && fine.value.body.toString(), 'y');
      assert.ok(c.usable);
    } finally {
      c.close();
    }
  });

  it('cancels a call the server holds: its callback gets the reason and the server sees CANCEL', async () => {
    const c = new H2Connection('127.0.0.1', port);
    try {
      let reason: Error | undefined;
      const handle = c.request(requestBlock('/hold'), Buffer.from('x'), (err) => (reason = err));
      while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
      c.cancel(handle, new Error('gave up'));
      assert.equal(reason?.message, 'gave up');
      while (!closedWith.has('/hold')) await new Promise((r) => setTimeout(r, 5));
      assert.equal(closedWith.get('/hold'), constants.NGHTTP2_CANCEL);
      assert.equal(c.pending, 0);
      const after = await call(c, requestBlock('/echo'), Buffer.from('z')).done;
      assert.equal(after.body.toString(), 'z');
    } finally {
      c.close();
      held.length = 0;
      closedWith.clear();
    }
  });

  it('on GOAWAY fails the calls it did not cover, finishes those it did, and takes no new one', async () => {
    const c = new H2Connection('127.0.0.1', port);
    try {
      const first = call(c, requestBlock('/hold'), Buffer.from('1'));
      while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
      const goaway = call(c, requestBlock('/goaway', [['x-last', String(first.id)]]), Buffer.from('g'));
      await assert.rejects(goaway.done, (err: unknown) => err instanceof H2Error && /going away \(NO_ERROR\) and did not process the request/.test(err.message));
      assert.equal(c.usable, false);
      await assert.rejects(call(c, requestBlock('/echo'), Buffer.from('n')).done, /takes no new requests/);
      const stream = held.shift() as ServerHttp2Stream;
      stream.respond({ ':status': 200 });
      stream.end('done');
      assert.equal((await first.done).body.toString(), 'done');
    } finally {
      c.close();
    }
  });

  it('on a GOAWAY with an error fails at once the calls the server may have processed too', async () => {
    const c = new H2Connection('127.0.0.1', port);
    try {
      const first = call(c, requestBlock('/hold'), Buffer.from('1'));
      while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
      const goaway = call(
        c,
        requestBlock('/goaway', [
          ['x-last', String(first.id)],
          ['x-code', String(constants.NGHTTP2_INTERNAL_ERROR)],
        ]),
        Buffer.from('g'),
      );
      const t = performance.now();
      await assert.rejects(goaway.done, /going away \(INTERNAL_ERROR\) and did not process the request/);
      await assert.rejects(first.done, (err: unknown) => err instanceof H2Error && /ended the connection \(INTERNAL_ERROR\); the request may have been processed/.test(err.message));
      assert.ok(performance.now() - t < 5_000, 'failed at once, not at a deadline');
      assert.equal(c.usable, false);
    } finally {
      c.close();
      held.length = 0;
    }
  });

  it('runs each callback once when one cancels another call while a GOAWAY ends them', async () => {
    const c = new H2Connection('127.0.0.1', port);
    try {
      const covered = call(c, requestBlock('/hold'), Buffer.from('a'));
      covered.done.catch(() => {});
      const dones = [0, 0];
      const handles: H2Call[] = [];
      for (const i of [0, 1]) {
        handles.push(
          c.request(requestBlock('/hold'), Buffer.from('h'), () => {
            dones[i] = (dones[i] ?? 0) + 1;
            // The first one ended cancels the other, which the GOAWAY ends too.
            if (i === 0) c.cancel(handles[1] as H2Call, new Error('cancelled from a callback'));
          }),
        );
      }
      while (held.length < 3) await new Promise((r) => setTimeout(r, 5));
      await assert.rejects(call(c, requestBlock('/goaway', [['x-last', String(covered.id)]]), Buffer.from('g')).done, /going away \(NO_ERROR\)/);
      assert.deepEqual(dones, [1, 1]);
      assert.equal(c.pending, 1, 'the call the GOAWAY covers is still open');
    } finally {
      c.close();
      held.length = 0;
    }
  });

  it('acknowledges a server that lowers its header table to 0 in the next block (RFC 7541, 4.2)', async () => {
    const small = createServer({ settings: { headerTableSize: 0 } });
    small.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      });
    });
    await new Promise<void>((resolve) => small.listen(0, '127.0.0.1', resolve));
    const c = new H2Connection('127.0.0.1', (small.address() as AddressInfo).port);
    try {
      for (let i = 0; i < 5; i++) assert.equal((await call(c, requestBlock('/x'), Buffer.from('b')).done).body.toString(), 'ok');
      assert.ok(c.usable);
    } finally {
      c.close();
      await new Promise<void>((resolve) => small.close(() => resolve()));
    }
  });

  it('fails every call in flight when the server drops the connection, and new ones at once', async () => {
    const c = new H2Connection('127.0.0.1', port);
    const inFlight = [call(c, requestBlock('/hold'), Buffer.from('a')), call(c, requestBlock('/drop'), Buffer.from('b'))];
    for (const o of await Promise.allSettled(inFlight.map((x) => x.done))) {
      assert.equal(o.status, 'rejected');
      assert.ok(o.reason instanceof H2Error, String(o.reason));
    }
    assert.equal(c.usable, false);
    await assert.rejects(call(c, requestBlock('/echo'), Buffer.from('n')).done, H2Error);
    held.length = 0;
  });

  it('fails with the socket error when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const c = new H2Connection('127.0.0.1', deadPort);
    await assert.rejects(call(c, requestBlock('/echo'), Buffer.from('x')).done, (err: unknown) => err instanceof H2Error && /ECONNREFUSED/.test(err.message));
  });
});
