import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Members of a gzip file written by node:zlib, which starts each with the same 10-byte header. */
export function gzipMembers(gz: Buffer): number {
  const header = gz.subarray(0, 10);
  let n = 0;
  for (let at = gz.indexOf(header); at !== -1; at = gz.indexOf(header, at + 1)) n++;
  return n;
}

const GO_GUNZIP = `package main

import (
	"compress/gzip"
	"io"
	"os"
)

// Go's gzip.Reader, multistream as gardener's restore uses it.
func main() {
	r, err := gzip.NewReader(os.Stdin)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(os.Stdout, r); err != nil {
		panic(err)
	}
}
`;

export const hasGo = spawnSync('go', ['version']).status === 0;

/** `gz` decompressed by Go's compress/gzip (needs a Go toolchain: see hasGo). */
export async function goGunzip(gz: Buffer): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'ebs-go-gunzip-'));
  try {
    writeFileSync(join(dir, 'main.go'), GO_GUNZIP);
    return await new Promise<Buffer>((resolve, reject) => {
      const child = execFile('go', ['run', 'main.go'], { cwd: dir, encoding: 'buffer', maxBuffer: 1 << 30 }, (err, stdout, stderr) =>
        err ? reject(new Error(`go gunzip: ${err.message}: ${stderr.toString()}`)) : resolve(stdout),
      );
      child.stdin?.end(gz);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
