import { readFileSync } from 'node:fs';
import { StoreError } from './types.js';

/** The Azure settings of the config, and the environment the standard `AZURE_STORAGE_*` names come from. */
export interface AzureAuthInput {
  /** The store URL, for errors. */
  store: string;
  account: string;
  keyFile: string;
  sasFile: string;
  endpoint: string;
  env: Record<string, string | undefined>;
}

/** How the store signs its requests; `source` names where the secret came from, never the secret. */
export type AzureCredentialChoice =
  | { kind: 'sas'; token: string; source: string }
  | { kind: 'key'; account: string; key: string; source: string }
  /** DefaultAzureCredential: workload identity, managed identity, environment, Azure CLI. */
  | { kind: 'identity' };

export interface AzureAuth {
  /** The blob service URL: `--azure-endpoint`, or the public cloud's URL of the account. */
  serviceUrl: string;
  account: string | undefined;
  credential: AzureCredentialChoice;
}

function readSecret(store: string, flag: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new StoreError('config', store, `--${flag} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const value = text.trim();
  if (value === '') throw new StoreError('config', store, `--${flag} ${path}: the file is empty`);
  return value;
}

/**
 * Picks the credential: a flag beats the environment, and a SAS token beats an account key (it is
 * the narrower grant): --azure-sas-file, --azure-key-file, AZURE_STORAGE_SAS_TOKEN,
 * AZURE_STORAGE_KEY, else DefaultAzureCredential. Checks the shape of what it finds, so a wrong
 * file fails here, naming the flag, rather than as a 403 on the first upload.
 */
export function resolveAzureAuth(i: AzureAuthInput, read: (flag: string, path: string) => string = (f, p) => readSecret(i.store, f, p)): AzureAuth {
  const account = i.account || i.env['AZURE_STORAGE_ACCOUNT'] || undefined;
  const fail = (message: string): StoreError => new StoreError('config', i.store, message);
  if (account !== undefined && !/^[a-z0-9]{3,24}$/.test(account)) throw fail(`storage account "${account}" is not 3 to 24 lowercase letters and digits`);
  let serviceUrl: string;
  if (i.endpoint) serviceUrl = i.endpoint.replace(/\/+$/, '');
  else if (account) serviceUrl = `https://${account}.blob.core.windows.net`;
  else throw fail('no storage account: set --azure-account (or AZURE_STORAGE_ACCOUNT), or --azure-endpoint');

  const sas = i.sasFile ? { token: read('azure-sas-file', i.sasFile), source: `--azure-sas-file ${i.sasFile}` } : undefined;
  const key = i.keyFile ? { key: read('azure-key-file', i.keyFile), source: `--azure-key-file ${i.keyFile}` } : undefined;
  const envSas = i.env['AZURE_STORAGE_SAS_TOKEN'] ? { token: i.env['AZURE_STORAGE_SAS_TOKEN'].trim(), source: 'AZURE_STORAGE_SAS_TOKEN' } : undefined;
  const envKey = i.env['AZURE_STORAGE_KEY'] ? { key: i.env['AZURE_STORAGE_KEY'].trim(), source: 'AZURE_STORAGE_KEY' } : undefined;

  const chosenSas = sas ?? (key ? undefined : envSas);
  if (chosenSas) {
    const token = chosenSas.token.replace(/^\?/, '');
    if (!/(^|&)sig=/.test(token)) throw fail(`${chosenSas.source}: not a SAS token (it has no sig= field)`);
    return { serviceUrl, account, credential: { kind: 'sas', token, source: chosenSas.source } };
  }
  const chosenKey = key ?? envKey;
  if (chosenKey) {
    if (!account) throw fail(`${chosenKey.source}: an account key needs its account: set --azure-account (or AZURE_STORAGE_ACCOUNT)`);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(chosenKey.key) || Buffer.from(chosenKey.key, 'base64').length < 16)
      throw fail(`${chosenKey.source}: not an account key (expected base64, as the portal shows it)`);
    return { serviceUrl, account, credential: { kind: 'key', account, key: chosenKey.key, source: chosenKey.source } };
  }
  return { serviceUrl, account, credential: { kind: 'identity' } };
}
