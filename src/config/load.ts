/**
 * Builds the configuration from a TOML file, PGMUX_* environment variables
 * and command-line flags. Each source wins over the one before it, and the
 * schema's defaults fill in the rest:
 *
 *   flags > environment > file > defaults
 *
 * The merged result is validated once, so a mistake is reported with its
 * key path and the source it came from, whichever source that was.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { parse as parseToml, TomlError } from 'smol-toml';
import { isPgbouncerIni, pgbouncerIniToConfig } from './pgbouncer-ini.ts';
import { parseEndpointSpecs } from './endpoint-spec.ts';
import { parsePeerSpecs } from '../cancel/peer-spec.ts';
import { ConfigError } from './errors.ts';
import { describeSetting, scalarSettings, type ScalarSetting } from './introspect.ts';
import { formatIssues } from './issues.ts';
import { REDACTED } from './redact.ts';
import { ConfigSchema, LOG_LEVELS, type Config, type LogLevel } from './schema.ts';
import { VERSION } from '../version.ts';

export { ConfigError };

/** A command-line flag that sets configuration. */
export interface ConfigFlag {
  /** `--pool-mode` */
  flag: string;
  /** The Config key it sets (`pool_mode`); `config` for --config, which names the file. */
  key: string;
  description: string;
  /** What its value is called in --help: `--pool-mode <mode>`. */
  arg: string;
  /** The environment variable for the same thing, if there is one. */
  env?: string;
  /** May be given several times; every value counts. */
  repeatable: boolean;
  /** Absent when the setting is unset by default. */
  default?: unknown;
}

export interface LoadedConfig {
  config: Config;
  /** The config file read, as an absolute path. */
  configPath?: string;
  /** --embedded: start a throw-away local primary and replica and serve them. */
  embedded: boolean;
  /** How the process runs: PgBouncer's command-line switches that are not settings. */
  run: RunOptions;
  /** Things the operator should know at start (pgbouncer.ini settings pgmux does without). */
  warnings: string[];
  /**
   * Text to print instead of starting, for --help or --version. `config`
   * then holds the defaults and no file or variable has been read.
   */
  help?: string;
}

/** PgBouncer's command-line switches that say how the process runs rather than set a setting. */
export interface RunOptions {
  /** -d: run in the background (needs pid_file and log_file). */
  daemon: boolean;
  /** -q: no log lines on standard output (log_file still gets them). */
  quiet: boolean;
  /** -R: PgBouncer's online restart, which pgmux refuses. */
  reboot: boolean;
}

const ENV_PREFIX = 'PGMUX_';

/** Settings with a one-letter flag as well, as PgBouncer's command line has them. */
const SHORT_FLAGS: Record<string, string> = { user: '-u' };

/** Settings naming files that, given in the config file, are relative to it. */
const RELATIVE_TO_FILE = ['auth_file', 'auth_hba_file', 'log_file', 'pid_file'];
const kebab = (key: string) => key.replaceAll('_', '-');

/** Every flag that sets configuration, in --help order. */
export function configFlags(): ConfigFlag[] {
  return [
    {
      flag: '--config',
      key: 'config',
      arg: 'file',
      env: `${ENV_PREFIX}CONFIG`,
      repeatable: false,
      description: 'TOML file to read settings from',
    },
    {
      flag: '--endpoint',
      key: 'endpoints',
      arg: 'name=url',
      env: `${ENV_PREFIX}ENDPOINTS`,
      repeatable: true,
      description: `${describeSetting('endpoints')}: name=postgresql://host:port[,host:port...][/db]; repeatable, and several may be given comma-separated`,
    },
    {
      flag: '--peer',
      key: 'peers',
      arg: 'id=host:port',
      env: `${ENV_PREFIX}PEERS`,
      repeatable: true,
      description: `${describeSetting('peers')}: peer_id=host:port (host may be a Unix-socket directory); repeatable, and several may be given comma-separated`,
    },
    {
      flag: '--user-password',
      key: 'users',
      arg: 'name=password',
      repeatable: true,
      description: 'Password pgmux logs in to servers with as this user; repeatable',
    },
    ...scalarSettings().map((s) => ({
      flag: `--${kebab(s.key)}`,
      key: s.key,
      arg: s.arg,
      env: `${ENV_PREFIX}${s.key.toUpperCase()}`,
      repeatable: false,
      description: s.choices === undefined ? s.description : `${s.description}: ${s.choices.join('|')}`,
      ...(s.default === undefined ? {} : { default: s.default }),
    })),
  ];
}

function helpLine(f: ConfigFlag): string {
  const notes: string[] = [];
  if (f.default !== undefined) notes.push(`default: ${typeof f.default === 'string' ? JSON.stringify(f.default) : String(f.default)}`);
  if (f.env !== undefined) notes.push(`env: ${f.env}`);
  return notes.length === 0 ? f.description : `${f.description} (${notes.join('; ')})`;
}

interface Program {
  command: Command;
  /** Commander's option attribute name → the flag it belongs to. */
  flagOf: Map<string, ConfigFlag>;
}

/** A fresh parser per call: commander keeps parsed values on the Command. */
function buildProgram(): Program {
  const command = new Command('pgmux')
    .description('PostgreSQL connection pooler, router and load balancer')
    .usage('[options] [pgmux.toml | pgbouncer.ini]')
    .argument('[file]', 'configuration file: pgmux TOML, or a pgbouncer.ini read as PgBouncer would')
    // --help and --version are ordinary options here so that loadConfig can
    // hand their text to the caller instead of commander exiting the process.
    .helpOption(false)
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .configureHelp({ helpWidth: 100 })
    .allowExcessArguments(false);
  const flagOf = new Map<string, ConfigFlag>();
  for (const f of configFlags()) {
    const short = SHORT_FLAGS[f.key];
    const option = new Option(`${short === undefined ? '' : `${short}, `}${f.flag} <${f.arg}>`, helpLine(f));
    if (f.key !== 'config') option.helpGroup('Settings:');
    if (f.repeatable) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
    command.addOption(option);
    flagOf.set(option.attributeName(), f);
  }
  command.option('--embedded', 'Start a throw-away local primary and replica and serve them');
  command.option('-d, --daemon', 'Run in the background once listening (needs pid_file and log_file)');
  command.option('-q, --quiet', 'No log lines on standard output; log_file still gets them');
  command.option('-v, --verbose', 'Log more: each -v one level more than log_level (-v debug, -vv trace)', (_: string, n: number) => n + 1, 0);
  command.option('-R, --reboot', "PgBouncer's online restart: refused, pgmux cannot take over another process's connections");
  command.option('-h, --help', 'Show this help');
  command.option('-V, --version', 'Show the version');
  return { command, flagOf };
}

const HELP_FOOTER = `
Every setting can also be given in the TOML file (--config) under its own
name (pool_mode), or as an environment variable (PGMUX_POOL_MODE). Flags win
over the environment, which wins over the file. See docs/configuration.md.`;

async function versionText(): Promise<string> {
  return `pgmux ${VERSION}`;
}

/** `steps` levels more verbose than `level`, at most trace. */
function moreVerbose(level: LogLevel, steps: number): LogLevel {
  return LOG_LEVELS[Math.min(LOG_LEVELS.indexOf(level) + steps, LOG_LEVELS.length - 1)];
}

/** Reads and parses a TOML config file; a ConfigError says what is wrong with it. */
export async function readConfigFile(file: string, warnings: string[] = []): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`config file "${file}" does not exist`);
    throw new ConfigError(`cannot read config file "${file}": ${(err as Error).message}`);
  }
  if (isPgbouncerIni(file, text)) {
    const { config, ignored } = pgbouncerIniToConfig(text, file);
    if (ignored.length > 0) warnings.push(`${file}: pgbouncer.ini settings pgmux does without (none affects who may log in): ${ignored.join(', ')}`);
    return config;
  }
  try {
    return parseToml(text);
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // smol-toml's message is "Invalid TOML document: what\n\n<code excerpt>".
    const what = err.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
    const excerpt = err.codeblock.trimEnd().split('\n').map((line) => `  ${line}`);
    throw new ConfigError([`${file}:${err.line}:${err.column}: TOML syntax error: ${what}`, ...excerpt]);
  }
}

/** Settings from one source other than the file, already in schema terms. */
interface Layer {
  settings: Map<string, unknown>;
  endpoints: Record<string, { nodes: string[] }>;
  peers: Record<string, Record<string, unknown>>;
  passwords: Map<string, string>;
  /** How error messages name where a setting came from. */
  label: (what: 'setting' | 'endpoints' | 'peers' | 'passwords', key?: string) => string;
}

const NUMBER = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const BOOLEANS: Record<string, boolean> = { true: true, false: false, '1': true, '0': false, yes: true, no: false, on: true, off: false };

/**
 * Environment and flag values are strings. Numbers and booleans are
 * converted when they read as one; anything else is left as the string so
 * validation reports it as given.
 */
function coerce(setting: ScalarSetting, raw: string): unknown {
  const text = raw.trim();
  if (setting.kind === 'number' || setting.kind === 'integer') return NUMBER.test(text) ? Number(text) : raw;
  if (setting.kind === 'boolean') return BOOLEANS[text.toLowerCase()] ?? raw;
  return raw;
}

function envLayer(env: NodeJS.ProcessEnv): Layer {
  const settings = new Map<string, unknown>();
  for (const s of scalarSettings()) {
    const raw = env[`${ENV_PREFIX}${s.key.toUpperCase()}`];
    if (raw !== undefined) settings.set(s.key, coerce(s, raw));
  }
  const specs = env[`${ENV_PREFIX}ENDPOINTS`];
  return {
    settings,
    // Empty counts as unset, so `PGMUX_ENDPOINTS=${X:-}` in a compose file is harmless.
    endpoints: specs === undefined || specs.trim() === '' ? {} : parseEndpointSpecs(specs, `${ENV_PREFIX}ENDPOINTS`),
    peers: parsePeerSpecs(env[`${ENV_PREFIX}PEERS`] ?? '', `${ENV_PREFIX}PEERS`),
    passwords: new Map(),
    label: (what, key) => (what === 'setting' ? `from ${ENV_PREFIX}${key!.toUpperCase()}` : what === 'peers' ? `from ${ENV_PREFIX}PEERS` : `from ${ENV_PREFIX}ENDPOINTS`),
  };
}

function flagLayer(program: Program): Layer {
  const settings = new Map<string, unknown>();
  let endpoints: Record<string, { nodes: string[] }> = {};
  let peers: Record<string, Record<string, unknown>> = {};
  const passwords = new Map<string, string>();
  const scalars = new Map(scalarSettings().map((s) => [s.key as string, s]));
  for (const [attr, value] of Object.entries(program.command.opts())) {
    const f = program.flagOf.get(attr);
    if (f === undefined || f.key === 'config') continue;
    if (f.key === 'endpoints') {
      for (const spec of value as string[]) {
        const more = parseEndpointSpecs(spec, '--endpoint');
        const twice = Object.keys(more).find((name) => Object.hasOwn(endpoints, name));
        if (twice !== undefined) throw new ConfigError(`--endpoint: endpoint "${twice}" is given twice`);
        endpoints = { ...endpoints, ...more };
      }
    } else if (f.key === 'peers') {
      peers = { ...peers, ...parsePeerSpecs((value as string[]).join(','), '--peer') };
    } else if (f.key === 'users') {
      for (const pair of value as string[]) {
        const eq = pair.indexOf('=');
        // The value is not repeated: whatever it holds is most likely a password.
        if (eq <= 0) throw new ConfigError(`--user-password: expected name=password, got a value ${eq < 0 ? 'without "="' : 'with no name before "="'}`);
        passwords.set(pair.slice(0, eq), pair.slice(eq + 1));
      }
    } else {
      settings.set(f.key, coerce(scalars.get(f.key)!, value as string));
    }
  }
  return {
    settings,
    endpoints,
    peers,
    passwords,
    label: (what, key) =>
      what === 'setting' ? `from --${kebab(key!)}` : what === 'endpoints' ? 'from --endpoint' : what === 'peers' ? 'from --peer' : 'from --user-password',
  };
}

const isTable = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/**
 * Adds entries to a table of named tables (endpoints, users), keeping the
 * other keys of an entry the file already has. A table that is not a
 * table at all is returned as is, so validation reports the file's mistake.
 */
function mergeNamed(base: unknown, additions: Map<string, Record<string, unknown>>): unknown {
  if (additions.size === 0 || (base !== undefined && !isTable(base))) return base;
  // Entries, not assignment: a name such as "__proto__" must stay a plain key.
  const out = new Map(Object.entries(base ?? {}));
  for (const [name, fields] of additions) {
    const old = out.get(name);
    out.set(name, { ...(isTable(old) ? old : {}), ...fields });
  }
  return Object.fromEntries(out);
}

/** Path segments joined with a character no key can hold, for source lookups. */
const pathId = (p: readonly PropertyKey[]) => p.map(String).join('\0');

function merge(file: Record<string, unknown>, layers: Layer[], sources: Map<string, string>): Record<string, unknown> {
  const merged = new Map(Object.entries(file));
  for (const layer of layers) {
    for (const [key, value] of layer.settings) {
      merged.set(key, value);
      sources.set(key, layer.label('setting', key));
    }
    const fileEndpoints = merged.get('endpoints');
    for (const name of Object.keys(layer.endpoints)) {
      // Only the nodes are replaced; an endpoint the file defines keeps its other settings.
      sources.set(pathId(['endpoints', name, 'nodes']), layer.label('endpoints'));
      if (!(isTable(fileEndpoints) && Object.hasOwn(fileEndpoints, name))) sources.set(pathId(['endpoints', name]), layer.label('endpoints'));
    }
    merged.set('endpoints', mergeNamed(fileEndpoints, new Map(Object.entries(layer.endpoints))));
    for (const id of Object.keys(layer.peers)) sources.set(pathId(['peers', id]), layer.label('peers'));
    merged.set('peers', mergeNamed(merged.get('peers'), new Map(Object.entries(layer.peers))));
    for (const name of layer.passwords.keys()) sources.set(pathId(['users', name, 'password']), layer.label('passwords'));
    merged.set(
      'users',
      mergeNamed(merged.get('users'), new Map([...layer.passwords].map(([name, password]) => [name, { password }]))),
    );
  }
  for (const [key, value] of merged) if (value === undefined) merged.delete(key);
  return Object.fromEntries(merged);
}

/** Validates merged settings, naming each problem's key path and source. */
function validate(input: Record<string, unknown>, sources: Map<string, string>): Config {
  const result = ConfigSchema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const sourceOf = (p: readonly PropertyKey[]) => {
    for (let i = p.length; i >= 0; i--) {
      const found = sources.get(pathId(p.slice(0, i)));
      if (found !== undefined) return found;
    }
    return undefined;
  };
  throw new ConfigError(formatIssues(result.error.issues, sourceOf));
}

/**
 * Commander's message on one line. An unknown `--flag=value` is quoted
 * whole by commander; the value may be a password meant for a misspelt
 * --user-password, so only the flag is kept.
 */
function commanderProblem(message: string): string {
  return message
    .replace(/^error: /, '')
    .replaceAll('\n', ' ')
    .replace(/'(--?[^'=\s]+)=[^']*'/g, `'$1=${REDACTED}'`);
}

/**
 * Reads the configuration from command-line arguments (without the node
 * and script names), the environment and the file they name. Throws
 * ConfigError for anything wrong, every problem on its own line.
 */
export async function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Promise<LoadedConfig> {
  const program = buildProgram();
  try {
    program.command.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) throw new ConfigError(commanderProblem(err.message));
    throw err;
  }
  const opts = program.command.opts<{
    embedded?: boolean;
    help?: boolean;
    version?: boolean;
    config?: string;
    daemon?: boolean;
    quiet?: boolean;
    verbose: number;
    reboot?: boolean;
  }>();
  const embedded = opts.embedded === true;
  const run: RunOptions = { daemon: opts.daemon === true, quiet: opts.quiet === true, reboot: opts.reboot === true };
  if (opts.help === true || opts.version === true) {
    const help = opts.help === true ? `${program.command.helpInformation()}${HELP_FOOTER}` : await versionText();
    return { config: ConfigSchema.parse({}), embedded, run, help, warnings: [] };
  }

  const envConfig = env[`${ENV_PREFIX}CONFIG`];
  const positional = program.command.args[0];
  const given = opts.config ?? positional ?? (envConfig === undefined || envConfig === '' ? undefined : envConfig);
  const configPath = given === undefined ? undefined : path.resolve(given);
  const sources = new Map<string, string>();
  const warnings: string[] = [];
  let file: Record<string, unknown> = {};
  if (configPath !== undefined) {
    const parsed = await readConfigFile(configPath, warnings);
    // TOML documents are always tables; this only guards the type.
    file = isTable(parsed) ? parsed : {};
    sources.set('', `in ${configPath}`);
    // A relative path in the file is relative to the file, as a file moved
    // together with its userlist.txt would expect.
    for (const key of RELATIVE_TO_FILE) {
      const value = file[key];
      if (typeof value === 'string' && value !== '' && !path.isAbsolute(value)) {
        file = { ...file, [key]: path.resolve(path.dirname(configPath), value) };
      }
    }
  }

  const layers = [envLayer(env), flagLayer(program)];
  const config = validate(merge(file, layers, sources), sources);
  // -v, as PgBouncer's: more log than the configuration asks for, also after a reload.
  config.log_level = moreVerbose(config.log_level, opts.verbose);
  return { config, configPath, embedded, run, warnings };
}
