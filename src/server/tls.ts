import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** Set for mutual TLS: clients must present a certificate this CA signed. */
  ca?: Buffer;
  requestCert?: boolean;
  rejectUnauthorized?: boolean;
}

export interface ServerTlsFiles {
  cert: string;
  key: string;
  clientCa?: string;
}

export class ServerTlsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServerTlsError';
  }
}

function read(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ServerTlsError(`--${flag} "${path}": cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * Reads and checks the API's certificate files before the server starts, so a wrong file fails the
 * start with the flag's name instead of as an OpenSSL code on the first client's handshake.
 */
export function loadServerTls(files: ServerTlsFiles): ServerTls {
  const cert = read('server-cert', files.cert);
  const key = read('server-key', files.key);
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw new ServerTlsError(`--server-cert "${files.cert}": no PEM certificate in the file`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.toString('latin1'))) throw new ServerTlsError(`--server-key "${files.key}": no PEM private key in the file`);
  const tls: ServerTls = { cert, key };
  if (files.clientCa) {
    const ca = read('server-client-ca', files.clientCa);
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ServerTlsError(`--server-client-ca "${files.clientCa}": no PEM certificate in the file`);
    Object.assign(tls, { ca, requestCert: true, rejectUnauthorized: true });
  }
  try {
    createSecureContext(tls);
  } catch (err) {
    const msg = (err as Error).message;
    if (/key values mismatch/i.test(msg)) throw new ServerTlsError(`--server-key "${files.key}" is not the private key of --server-cert "${files.cert}"`);
    throw new ServerTlsError(`--server-cert "${files.cert}" / --server-key "${files.key}": ${msg}`);
  }
  return tls;
}
