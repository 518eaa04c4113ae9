import './reaper.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * s3rver (an S3-compatible server from npm) in a child process, so tests can freeze it (SIGSTOP)
 * like any other black-holed endpoint. Needs the legacy OpenSSL provider on Node 20, without which
 * its list pagination fails.
 */
export class S3Server {
  private constructor(
    private readonly child: ChildProcess,
    readonly endpoint: string,
    readonly directory: string,
  ) {}

  static async start(buckets: string[]): Promise<S3Server> {
    const directory = mkdtempSync(join(tmpdir(), 'ebs-s3rver-'));
    const script = `
      const S3rver = require('s3rver');
      const srv = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: ${JSON.stringify(directory)},
        configureBuckets: ${JSON.stringify(buckets.map((name) => ({ name })))} });
      srv.run().then(({ port }) => process.stdout.write('PORT ' + port + '\\n'));
      process.on('SIGTERM', () => srv.close().then(() => process.exit(0)));`;
    const child = spawn(process.execPath, ['-e', script], {
      env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /PORT (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}: ${err}`)));
    });
    process.once('exit', () => child.kill('SIGKILL'));
    return new S3Server(child, `http://127.0.0.1:${port}`, directory);
  }

  /** Where s3rver keeps an object's bytes on disk (for corruption tests). */
  objectFile(bucket: string, key: string): string {
    return join(this.directory, bucket, `${key}._S3rver_object`);
  }

  freeze(): void {
    this.child.kill('SIGSTOP');
  }

  thaw(): void {
    this.child.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGKILL');
      await new Promise((resolve) => this.child.once('exit', resolve));
    }
    rmSync(this.directory, { recursive: true, force: true });
  }
}
