import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ConfigError, configFlags, loadConfig, readConfigFile } from '../src/config/load.ts';
import { parseEndpointSpecs } from '../src/config/endpoint-spec.ts';
import { ConfigSchema, POOL_MODES } from '../src/config/schema.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgmux-config-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCount = 0;
async function tomlFile(text: string): Promise<string> {
  const file = path.join(dir, `pgmux-${++fileCount}.toml`);
  await writeFile(file, text);
  return file;
}

/** The ConfigError message loadConfig throws, or fails the test. */
async function configError(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const err = await loadConfig(argv, env).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return (err as ConfigError).message;
}

describe('defaults', () => {
  it('come from the schema when nothing is given', async () => {
    const { config, configPath, embedded, help } = await loadConfig([], {});
    expect(config).toEqual({
      listen: '127.0.0.1:6432',
      unix_socket_dir: '/tmp',
      unix_socket_mode: '0777',
      so_reuseport: false,
      workers: 'auto',
      endpoints: {},
      pool_mode: 'session',
      default_pool_size: 20,
      max_client_conn: 100,
      max_user_client_conn: 0,
      max_db_client_connections: 0,
      max_db_connections: 0,
      max_user_connections: 0,
      min_pool_size: 0,
      reserve_pool_size: 0,
      reserve_pool_timeout: 5,
      auth_failure_limit: 20,
      client_login_timeout: 60,
      query_wait_timeout: 120,
      client_idle_timeout: 0,
      idle_transaction_timeout: 0,
      query_timeout: 0,
      transaction_timeout: 0,
      server_idle_timeout: 600,
      server_lifetime: 3600,
      server_connect_timeout: 15,
      server_reset_query: 'DISCARD ALL',
      server_check_delay: 30,
      server_check_query: 'select 1',
      max_packet_size: 1073741823,
      auth_type: 'scram-sha-256',
      auth_query: 'SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1',
      auth_cache_ttl: 60,
      auth_negative_cache_ttl: 5,
      users: {},
      log_level: 'info',
      log_format: 'auto',
      log_connections: true,
      log_disconnections: true,
      log_pooler_errors: true,
      log_stats: true,
      stats_period: 60,
      max_prepared_statements: 200,
      on_session_state: 'pin',
      ignore_startup_parameters: '',
      track_extra_parameters:
        'search_path,statement_timeout,lock_timeout,idle_in_transaction_session_timeout,default_transaction_isolation,default_transaction_read_only,work_mem',
      client_tls_sslmode: 'disable',
      server_tls_sslmode: 'disable',
      sni_domain: '',
      control_plane_cache_ttl: 60,
      control_plane_cache_size: 10000,
      control_plane_timeout: 5,
      control_plane_retries: 3,
      load_balance: 'session',
      max_replica_lag: 10,
      read_your_writes: 'lsn',
      health_check_period: 2,
      health_check_timeout: 3,
      health_check_max_retries: 1,
      replication_check_period: 0.1,
      log_per_node_statement: false,
      notice_per_node_statement: false,
      admin_users: '',
      stats_users: '',
      shutdown_timeout: 30,
      peer_id: 0,
      peers: {},
    });
    expect(config).toEqual(ConfigSchema.parse({}));
    expect(configPath).toBeUndefined();
    expect(embedded).toBe(false);
    expect(help).toBeUndefined();
  });

  it('ignore PGMUX_ variables that name no setting', async () => {
    const { config } = await loadConfig([], { PGMUX_TEST_LOG: 'debug', PGMUX_SOMETHING: 'x' });
    expect(config).toEqual(ConfigSchema.parse({}));
  });
});

describe('TOML file', () => {
  it('sets every kind of setting', async () => {
    const file = await tomlFile(`
listen = "[::1]:7000"
default_endpoint = "main"
pool_mode = "none"
default_pool_size = 5
query_wait_timeout = 0.5
server_reset_query = ""
auth_type = "md5"
auth_file = "/etc/pgmux/userlist.txt"
log_level = "debug"

[endpoints.main]
nodes = ["postgresql://10.0.0.1:5432/app", "postgresql://10.0.0.2:5432/app"]
pool_mode = "session"
default_pool_size = 10

[endpoints."reports.v2"]
nodes = ["postgres://db.example.com"]

[users.batch]
password = "s3cret"
pool_mode = "none"
`);
    const { config, configPath } = await loadConfig(['--config', file], {});
    expect(configPath).toBe(file);
    expect(config).toMatchObject({
      listen: '[::1]:7000',
      default_endpoint: 'main',
      pool_mode: 'none',
      default_pool_size: 5,
      query_wait_timeout: 0.5,
      server_reset_query: '',
      auth_type: 'md5',
      auth_file: '/etc/pgmux/userlist.txt',
      log_level: 'debug',
      endpoints: {
        main: { nodes: ['postgresql://10.0.0.1:5432/app', 'postgresql://10.0.0.2:5432/app'], pool_mode: 'session', default_pool_size: 10 },
        'reports.v2': { nodes: ['postgres://db.example.com'] },
      },
      users: { batch: { password: 's3cret', pool_mode: 'none' } },
    });
    // Untouched settings keep their defaults.
    expect(config.max_client_conn).toBe(100);
  });

  it('is found through PGMUX_CONFIG, and --config wins over it', async () => {
    const a = await tomlFile('pool_mode = "none"');
    const b = await tomlFile('pool_mode = "session"\nmax_client_conn = 7');
    expect((await loadConfig([], { PGMUX_CONFIG: a })).config.pool_mode).toBe('none');
    const both = await loadConfig(['--config', b], { PGMUX_CONFIG: a });
    expect(both.configPath).toBe(b);
    expect(both.config.max_client_conn).toBe(7);
  });

  it('resolves a relative path to the file, and returns the file as an absolute path', async () => {
    const file = await tomlFile('auth_file = "userlist.txt"');
    const relative = path.relative(process.cwd(), file);
    const { config, configPath } = await loadConfig(['--config', relative], {});
    expect(configPath).toBe(file);
    expect(config.auth_file).toBe(path.join(dir, 'userlist.txt'));
    // From a flag, a relative path stays relative to where pgmux runs.
    expect((await loadConfig(['--config', file, '--auth-file', 'users.txt'], {})).config.auth_file).toBe('users.txt');
  });

  it('reports syntax errors with line and column', async () => {
    const file = await tomlFile('listen = "127.0.0.1:6432"\npool_mode = "session\n');
    const message = await configError(['--config', file]);
    expect(message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:\\d+: TOML syntax error: `));
    expect(message).toContain('pool_mode = "session');
  });

  it('reports a missing file', async () => {
    expect(await configError(['--config', path.join(dir, 'absent.toml')])).toMatch(/config file ".*absent\.toml" does not exist/);
  });

  it('readConfigFile returns the parsed document unvalidated', async () => {
    const file = await tomlFile('anything = [1, 2]\n[endpoints.x]\nnodes = []');
    expect(await readConfigFile(file)).toEqual({ anything: [1, 2], endpoints: { x: { nodes: [] } } });
  });
});

describe('precedence: flags > environment > file > defaults', () => {
  it('for one setting', async () => {
    const file = await tomlFile('pool_mode = "none"');
    const env = { PGMUX_POOL_MODE: 'transaction' };
    expect((await loadConfig([], {})).config.pool_mode).toBe('session');
    expect((await loadConfig(['--config', file], {})).config.pool_mode).toBe('none');
    expect((await loadConfig(['--config', file], env)).config.pool_mode).toBe('transaction');
    expect((await loadConfig(['--config', file, '--pool-mode', 'statement'], env)).config.pool_mode).toBe('statement');
  });

  it('for any combination of sources (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
        async (inFile, inEnv, inFlag) => {
          const file = await tomlFile(inFile === undefined ? '' : `max_client_conn = ${inFile}`);
          const env = inEnv === undefined ? {} : { PGMUX_MAX_CLIENT_CONN: String(inEnv) };
          const argv = ['--config', file, ...(inFlag === undefined ? [] : ['--max-client-conn', String(inFlag)])];
          const { config } = await loadConfig(argv, env);
          expect(config.max_client_conn).toBe(inFlag ?? inEnv ?? inFile ?? 100);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('converts numbers given as strings, and takes strings as given', async () => {
    const { config } = await loadConfig(['--server-lifetime', '90.5', '--server-reset-query', ''], {
      PGMUX_DEFAULT_POOL_SIZE: ' 30 ',
      PGMUX_AUTH_QUERY: 'SELECT 1',
    });
    expect(config.server_lifetime).toBe(90.5);
    expect(config.default_pool_size).toBe(30);
    expect(config.server_reset_query).toBe('');
    expect(config.auth_query).toBe('SELECT 1');
  });

  it('adds endpoints from flags and environment to the file, replacing nodes by name', async () => {
    const file = await tomlFile(`
[endpoints.main]
nodes = ["postgresql://file-main:5432"]
pool_mode = "none"
[endpoints.old]
nodes = ["postgresql://file-old:5432"]
`);
    const { config } = await loadConfig(['--config', file, '--endpoint', 'main=flag-main:5432', '--endpoint', 'extra=flag-extra:1'], {
      PGMUX_ENDPOINTS: 'main=env-main:5432,envonly=env-only:5432',
    });
    expect(config.endpoints).toEqual({
      // The file's other settings for an endpoint stay.
      main: { nodes: ['postgresql://flag-main:5432'], pool_mode: 'none' },
      old: { nodes: ['postgresql://file-old:5432'] },
      envonly: { nodes: ['postgresql://env-only:5432'] },
      extra: { nodes: ['postgresql://flag-extra:1'] },
    });
  });

  it('sets user passwords from --user-password, keeping the file\'s other user settings', async () => {
    const file = await tomlFile('[users.alice]\npool_mode = "none"\npassword = "old"');
    const { config } = await loadConfig(['--config', file, '--user-password', 'alice=new=pass,word', '--user-password', 'bob=x'], {});
    expect(config.users).toEqual({ alice: { pool_mode: 'none', password: 'new=pass,word' }, bob: { password: 'x' } });
  });

  it('--embedded is reported, not a setting', async () => {
    expect((await loadConfig(['--embedded'], {})).embedded).toBe(true);
  });
});

describe('errors', () => {
  it('name the key, what was expected and what was given', async () => {
    expect(await configError(['--pool-mode', 'sesion'])).toBe(
      'pool_mode: expected one of session|transaction|statement|none, got "sesion" (from --pool-mode)',
    );
    expect(await configError([], { PGMUX_DEFAULT_POOL_SIZE: '1.5' })).toBe(
      'default_pool_size: expected an integer, got 1.5 (from PGMUX_DEFAULT_POOL_SIZE)',
    );
    expect(await configError([], { PGMUX_QUERY_WAIT_TIMEOUT: 'soon' })).toBe(
      'query_wait_timeout: expected a number, got "soon" (from PGMUX_QUERY_WAIT_TIMEOUT)',
    );
    expect(await configError(['--max-client-conn', '0'])).toBe('max_client_conn: expected at least 1, got 0 (from --max-client-conn)');
    expect(await configError(['--listen', 'localhost'])).toMatch(/^listen: expected host:port \(IPv6 as \[::1\]:6432\), got "localhost"/);
  });

  it('refuse unknown keys, suggesting the likely one', async () => {
    const file = await tomlFile('pool_mod = "session"\n[endpoints.main]\nnodes = ["postgresql://h:1"]\ndefault_poolsize = 3');
    const lines = (await configError(['--config', file])).split('\n');
    expect(lines).toContain(`unknown key "pool_mod", did you mean "pool_mode"? (in ${file})`);
    expect(lines).toContain(`endpoints.main: unknown key "default_poolsize", did you mean "default_pool_size"? (in ${file})`);
  });

  it('list every problem, one per line, with nested paths', async () => {
    const file = await tomlFile(`
auth_type = "kerberos"
default_pool_size = "ten"
[endpoints."bad name"]
nodes = ["postgresql://h:1"]
[endpoints.empty]
nodes = []
[endpoints.wrong]
nodes = ["mysql://h:3306", "postgresql://h1,h2/db"]
[users.bob]
password = 5
`);
    const lines = (await configError(['--config', file])).split('\n').map((l) => l.replace(` (in ${file})`, ''));
    expect(lines).toEqual(
      expect.arrayContaining([
        'auth_type: expected one of scram-sha-256|md5|password|trust|hba, got "kerberos"',
        'default_pool_size: expected an integer, got "ten"',
        'endpoints: invalid endpoint name "bad name": expected letters, digits, "_", "." and "-", not starting with "." or "-"',
        'endpoints.empty.nodes: expected at least 1 entry, got none',
        'endpoints.wrong.nodes[0]: "mysql://h:3306": expected a postgresql:// URL, got scheme "mysql"',
        'endpoints.wrong.nodes[1]: "postgresql://h1,h2/db": expected one host per node URL; list each host as its own node',
        'users.bob.password: expected a string, got a number',
      ]),
    );
    expect(lines).toHaveLength(7);
  });

  it('check that default_endpoint names an endpoint', async () => {
    expect(await configError(['--default-endpoint', 'main'])).toBe(
      'default_endpoint: no endpoint named "main" (no endpoints are configured) (from --default-endpoint)',
    );
    expect(await configError(['--default-endpoint', 'mian', '--endpoint', 'main=h:1,other=h:2'])).toContain(
      'no endpoint named "mian" (endpoints: main, other)',
    );
    const ok = await loadConfig(['--default-endpoint', 'main', '--endpoint', 'main=h:1'], {});
    expect(ok.config.default_endpoint).toBe('main');
  });

  it('for command-line mistakes', async () => {
    expect(await configError(['--pool-mod', 'none'])).toMatch(/unknown option '--pool-mod'.*--pool-mode/);
    expect(await configError(['--listen'])).toMatch(/argument missing/);
    expect(await configError(['stray'])).toMatch(/config file ".*stray" does not exist/);
    expect(await configError(['one.toml', 'two.toml'])).toMatch(/too many arguments/);
    expect(await configError(['--user-password', 'nopassword'])).toBe('--user-password: expected name=password, got a value without "="');
    expect(await configError(['--endpoint', 'a=h:1', '--endpoint', 'a=h:2'])).toBe('--endpoint: endpoint "a" is given twice');
    expect(await configError([], { PGMUX_ENDPOINTS: 'main=http://h' })).toBe(
      'PGMUX_ENDPOINTS "main=http://h": expected a postgresql:// URL, got scheme "http"',
    );
  });
});

describe('parseEndpointSpecs', () => {
  it('expands a multi-host URL to one URL per host', () => {
    expect(parseEndpointSpecs('main=postgresql://u:p@h1:5432,h2:5433/db')).toEqual({
      main: { nodes: ['postgresql://u:p@h1:5432/db', 'postgresql://u:p@h2:5433/db'] },
    });
  });

  it('takes several endpoints comma-separated, keeping parameters', () => {
    expect(parseEndpointSpecs('a=postgresql://h1:1,h2:2/db?sslmode=disable&application_name=x, b=postgres://[::1]:3,c=h4')).toEqual({
      a: { nodes: ['postgresql://h1:1/db?sslmode=disable&application_name=x', 'postgresql://h2:2/db?sslmode=disable&application_name=x'] },
      b: { nodes: ['postgres://[::1]:3'] },
      c: { nodes: ['postgresql://h4'] },
    });
  });

  it('accepts bare host:port lists', () => {
    expect(parseEndpointSpecs('main=127.0.0.1:5432,127.0.0.1:5433/app')).toEqual({
      main: { nodes: ['postgresql://127.0.0.1:5432/app', 'postgresql://127.0.0.1:5433/app'] },
    });
    expect(parseEndpointSpecs('v6=[::1]:5432,[fe80::2]')).toEqual({ v6: { nodes: ['postgresql://[::1]:5432', 'postgresql://[fe80::2]'] } });
    expect(parseEndpointSpecs('auth=app:pw@h:1/db')).toEqual({ auth: { nodes: ['postgresql://app:pw@h:1/db'] } });
  });

  it('keeps names such as __proto__ as plain keys', () => {
    const out = parseEndpointSpecs('__proto__=h:1');
    expect(Object.keys(out)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
  });

  it.each([
    ['postgresql://h:1', 'expected name=postgresql://host:port'],
    ['=h:1', 'expected name=postgresql://host:port'],
    ['-x=h:1', 'expected name=postgresql://host:port'],
    ['a=', 'expected a postgresql:// URL or host:port after "="'],
    ['a=http://h:1', 'expected a postgresql:// URL, got scheme "http"'],
    ['a=postgresq:/h', 'expected a postgresql:// URL or host:port'],
    ['a=h:70000', 'invalid port "70000" in "h:70000": expected 1-65535'],
    ['a=h:0', 'invalid port "0" in "h:0": expected 1-65535'],
    ['a=h:', 'expected a postgresql:// URL or host:port'],
    ['a=postgresql://h:', 'invalid port "" in "h:": expected 1-65535'],
    ['a=[fe80::1%25eth0]:5432', 'invalid host "[fe80::1%25eth0]:5432"'],
    ['a=h1,,h2', 'empty host'],
    ['a=h1:1,', 'empty host'],
    ['a=postgresql:///db', 'expected a host in the URL'],
    ['a=h one:1', 'invalid host "h one:1"'],
    ['a=h:1,a=h:2', 'endpoint "a" is given twice'],
  ])('refuses %j', (spec, problem) => {
    expect(() => parseEndpointSpecs(spec)).toThrow(ConfigError);
    expect(() => parseEndpointSpecs(spec)).toThrow(problem);
  });

  const name = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}$/);
  const hostname = fc.oneof(
    fc.domain(),
    fc.ipV4(),
    fc.ipV6().map((a) => `[${a}]`),
  );
  const host = fc.record({ host: hostname, port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }) })
    .map(({ host, port }) => (port === undefined ? host : `${host}:${port}`));
  const endpoint = fc.record({
    name,
    scheme: fc.constantFrom('postgresql://', 'postgres://', ''),
    userinfo: fc.constantFrom('', 'app@', 'app:s%2Cecret@'),
    hosts: fc.array(host, { minLength: 1, maxLength: 4 }),
    rest: fc.constantFrom('', '/db', '/my%20db?sslmode=require', '?application_name=pgmux&connect_timeout=5'),
  });

  it('round-trips any valid list of endpoints (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(endpoint, { minLength: 1, maxLength: 4, selector: (e) => e.name }), (endpoints) => {
        const spec = endpoints.map((e) => `${e.name}=${e.scheme}${e.userinfo}${e.hosts.join(',')}${e.rest}`).join(',');
        const expected = Object.fromEntries(
          endpoints.map((e) => [e.name, { nodes: e.hosts.map((h) => `${e.scheme || 'postgresql://'}${e.userinfo}${h}${e.rest}`) }]),
        );
        const parsed = parseEndpointSpecs(spec);
        expect(parsed).toEqual(expected);
        // Whatever the parser gives, the schema accepts as nodes.
        expect(() => ConfigSchema.parse({ endpoints: parsed })).not.toThrow();
      }),
    );
  });
});

describe('flags and help', () => {
  it('configFlags covers every setting', () => {
    const flags = configFlags();
    const keys = new Set(flags.map((f) => f.key));
    for (const key of Object.keys(ConfigSchema.shape)) expect(keys).toContain(key);
    expect(flags.find((f) => f.key === 'pool_mode')).toMatchObject({
      flag: '--pool-mode',
      env: 'PGMUX_POOL_MODE',
      default: 'session',
      repeatable: false,
    });
    expect(flags.find((f) => f.flag === '--endpoint')).toMatchObject({ key: 'endpoints', env: 'PGMUX_ENDPOINTS', repeatable: true });
    expect(flags.find((f) => f.flag === '--user-password')).toMatchObject({ key: 'users', repeatable: true });
    expect(flags.find((f) => f.flag === '--config')).toMatchObject({ key: 'config', env: 'PGMUX_CONFIG' });
  });

  it('--help lists every flag with its description, default and variable, without reading anything', async () => {
    const { help, config } = await loadConfig(['--help', '--config', path.join(dir, 'absent.toml')], { PGMUX_POOL_MODE: 'bogus' });
    expect(help).toBeDefined();
    expect(config).toEqual(ConfigSchema.parse({}));
    // Commander wraps long lines; compare with whitespace folded.
    const text = help!.replace(/\s+/g, ' ');
    for (const f of configFlags()) {
      expect(text).toContain(`${f.flag} <${f.arg}>`);
      expect(text).toContain(f.description.replace(/\s+/g, ' '));
      if (f.env !== undefined) expect(text).toContain(`env: ${f.env}`);
      if (f.default !== undefined) expect(text).toContain(`default: ${typeof f.default === 'string' ? JSON.stringify(f.default) : f.default}`);
    }
    for (const flag of ['--embedded', '--help', '--version']) expect(text).toContain(flag);
    expect((await loadConfig(['-h'], {})).help).toBe(help);
  });

  it('--version gives the package version', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect((await loadConfig(['--version'], {})).help).toBe(`pgmux ${pkg.version}`);
  });

  it('accepts every pool mode from each source', async () => {
    for (const mode of POOL_MODES) {
      expect((await loadConfig(['--pool-mode', mode], {})).config.pool_mode).toBe(mode);
      expect((await loadConfig([], { PGMUX_POOL_MODE: mode })).config.pool_mode).toBe(mode);
    }
  });
});

describe('docs/configuration.md', () => {
  it('documents every setting', async () => {
    const docs = await readFile(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    for (const key of Object.keys(ConfigSchema.shape)) expect(docs).toMatch(new RegExp(`^\\| \`${key}\``, 'm'));
  });
});

describe('secrets in errors', () => {
  /** Every problem line, checked to hold none of `secrets`. */
  async function problemsWithout(secrets: string[], argv: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
    const message = await configError(argv, env);
    for (const s of secrets) expect(message).not.toContain(s);
    return message;
  }

  it('a password of the wrong type is described by its type only', async () => {
    const file = await tomlFile('[users.alice]\npassword = 98765432\n[users.bob]\npassword = ["pw-in-a-list"]');
    const message = await problemsWithout(['98765432', 'pw-in-a-list'], ['--config', file]);
    expect(message).toContain('users.alice.password: expected a string, got a number');
    expect(message).toContain('users.bob.password: expected a string, got a list');
  });

  it('a malformed --user-password is not repeated', async () => {
    expect(await problemsWithout(['alice-pw-123'], ['--user-password', 'alice:alice-pw-123'])).toBe(
      '--user-password: expected name=password, got a value without "="',
    );
    expect(await problemsWithout(['only-a-pw'], ['--user-password', '=only-a-pw'])).toContain('no name before "="');
    // A misspelt flag given as --flag=value is named without its value.
    expect(await problemsWithout(['bob=hunter2'], ['--user-pasword=bob=hunter2'])).toMatch(/unknown option '--user-pasword=\[redacted\]'/);
  });

  it('a password inside a node URL is left out, wherever the URL came from', async () => {
    const file = await tomlFile('[endpoints.main]\nnodes = ["postgresql://app:url-pw-1@h1,h2/db", "mysql://app:url-pw-2@h:3306"]');
    const lines = (await problemsWithout(['url-pw-1', 'url-pw-2'], ['--config', file])).split('\n');
    expect(lines[0]).toContain('"postgresql://app:[redacted]@h1,h2/db": expected one host per node URL');
    await problemsWithout(['url-pw-3'], ['--endpoint', 'main=postgresql://app:url-pw-3@h1,,h2']);
    await problemsWithout(['url-pw-4'], ['--endpoint', 'main=app:url-pw-4@h:99999']);
    await problemsWithout(['url-pw-5'], [], { PGMUX_ENDPOINTS: 'main=http://app:url-pw-5@h' });
    await problemsWithout(['url-pw-6'], ['--endpoint', 'main=postgresql://h1:1,h2:x/db?sslmode=disable&password=url-pw-6']);
    // An "@" the password should have percent-encoded does not let its tail through.
    await problemsWithout(['p@ss'], ['--endpoint', 'main=postgresql://app:p@ss@h1:70000']);
  });

  it('a TOML syntax error does not quote the password on the broken line', async () => {
    const file = await tomlFile('[users.alice]\npassword = "toml-pw-1\n');
    const message = await problemsWithout(['toml-pw-1'], ['--config', file]);
    expect(message).toContain('password = [redacted]');
  });

  it('a stray line in a pgbouncer.ini is not quoted back', async () => {
    const file = path.join(dir, 'stray.ini');
    await writeFile(file, 'ini-pw-1\n[pgbouncer]\n');
    expect(await problemsWithout(['ini-pw-1'], [file])).toBe(`${file}:1: expected "key = value" inside a [section]`);
  });

  it('ConfigError redacts whatever secret a message quotes', () => {
    const e = new ConfigError([
      'x "postgresql://u:a1@h/db?password=a2&sslpassword=a3"',
      "conn host=h password='a 4' user=u",
      'secret SCRAM-SHA-256$4096:c2FsdA==$a5:a6 and md5' + '0123456789abcdef0123456789abcdef',
    ]);
    for (const s of ['a1', 'a2', 'a3', 'a 4', 'a5', 'a6', '0123456789abcdef']) expect(e.message).not.toContain(s);
    expect(e.problems[1]).toBe('conn host=h password=[redacted] user=u');
  });
});
