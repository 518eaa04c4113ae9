import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP proxy in front of a real server that answers the next N requests itself with an error
 * (5xx, throttling) or by resetting the connection: transient faults, injected for real on the wire.
 */
export class FlakyProxy {
  private failures: Array<{ fault: { status: number } | 'reset'; match: (req: IncomingMessage) => boolean }> = [];
  /** Requests that reached the proxy, failed or forwarded. */
  requests = 0;
  /** Method, path and headers of every request, for tests that check what a client sent. */
  readonly seen: Array<{ method: string; url: string; headers: Record<string, string | string[] | undefined> }> = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<FlakyProxy> {
    const t = new URL(target);
    let proxy: FlakyProxy | undefined;
    const server = createServer((req, res) => {
      const self = proxy as FlakyProxy;
      self.requests++;
      self.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      // The first armed fault this request matches; the others wait for theirs.
      const at = self.failures.findIndex((f) => f.match(req));
      const fault = at < 0 ? undefined : self.failures.splice(at, 1)[0]?.fault;
      if (fault === 'reset') {
        req.socket.destroy();
        return;
      }
      if (fault) {
        req.resume();
        req.on('end', () => {
          res.writeHead(fault.status, { 'content-type': 'application/xml' });
          res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.status === 503 ? 'SlowDown' : 'InternalError'}</Code><Message>injected</Message></Error>`);
        });
        return;
      }
      const upstream = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new FlakyProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return proxy;
  }

  /** Faults armed and not yet met by a request. */
  get armed(): number {
    return this.failures.length;
  }

  /** The next `count` requests (those `match` accepts, when given) fail with `fault`. */
  failNext(count: number, fault: { status: number } | 'reset', match: (req: IncomingMessage) => boolean = () => true): void {
    for (let i = 0; i < count; i++) this.failures.push({ fault, match });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
