/**
 * The files a configuration names, checked before anything is started:
 * a missing or unreadable one is a mistake in the configuration like any
 * other (exit status 2, every problem at once), not a failure found half
 * way through start-up.
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { loadHba } from '../auth/hba.ts';
import { loadUserlist } from '../auth/userlist.ts';
import { ConfigError } from '../config/errors.ts';
import type { Config } from '../config/schema.ts';

async function unreadable(key: string, file: string): Promise<string | null> {
  try {
    await access(file, constants.R_OK);
    return null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? `${key} "${file}" does not exist` : `${key} "${file}" cannot be read: ${e.message}`;
  }
}

/** Throws a ConfigError naming every configured file that is missing, unreadable or (auth_file) malformed. */
export async function checkConfiguredFiles(config: Config): Promise<void> {
  const problems: string[] = [];
  if (config.auth_file !== undefined) {
    try {
      await loadUserlist(config.auth_file);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  // The rules are read only when they decide who logs in.
  if (config.auth_type === 'hba' && config.auth_hba_file !== undefined) {
    try {
      loadHba(config.auth_hba_file);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  // The client-side TLS files are read only when TLS with clients is on.
  const files: [string, string | undefined][] = [['server_tls_ca_file', config.server_tls_ca_file]];
  if (config.client_tls_sslmode !== 'disable') {
    for (const [key, file] of [['client_tls_cert_file', config.client_tls_cert_file], ['client_tls_key_file', config.client_tls_key_file]] as const) {
      if (file === undefined) problems.push(`client_tls_sslmode = ${config.client_tls_sslmode} needs ${key}`);
      else files.push([key, file]);
    }
  }
  for (const [key, file] of files) {
    const problem = file === undefined ? null : await unreadable(key, file);
    if (problem !== null) problems.push(problem);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
