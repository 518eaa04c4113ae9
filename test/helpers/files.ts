import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/** Flips one byte of a file in place, size unchanged: bit rot that only a checksum can see. */
export function flipByteInFile(path: string, offset: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}
