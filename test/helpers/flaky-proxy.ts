import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP proxy in front of a real server that answers the next N requests itself with an error
 * (5xx, throttling) or by resetting the connection: transient faults, injected for real on the wire.
 */
export class FlakyProxy {
  private failures: Array<{ status: number } | 'reset'> = [];
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
      const fault = self.failures.shift();
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

  failNext(count: number, fault: { status: number } | 'reset'): void {
    for (let i = 0; i < count; i++) this.failures.push(fault);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
