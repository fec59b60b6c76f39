import { describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadHba, matchHba, parseHba, splitHbaLine, type HbaClient, type HbaRule } from '../src/auth/hba.ts';
import { ConfigError } from '../src/config/errors.ts';
import { tempDir } from './helpers/temp.ts';

const client = (over: Partial<HbaClient>): HbaClient => ({
  local: false,
  address: '127.0.0.1',
  tls: false,
  database: 'db',
  user: 'user',
  replication: false,
  ...over,
});

/** The method the first matching rule gives, or 'reject' when none matches (PostgreSQL's implicit reject). */
function methodFor(rules: HbaRule[], over: Partial<HbaClient>): string {
  return matchHba(rules, client(over))?.method ?? 'reject';
}

function problemsOf(text: string): string[] {
  try {
    parseHba(text, 'hba.conf');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('parsed without problems');
}

describe('splitHbaLine', () => {
  it('splits fields on whitespace and lists on commas, with comments and quotes', () => {
    expect(splitHbaLine('host\tall  all 10.0.0.0/8 md5 # comment')).toEqual(
      ['host', 'all', 'all', '10.0.0.0/8', 'md5'].map((v) => [{ value: v, quoted: false }]),
    );
    expect(splitHbaLine('host a,b user1,user2 , user3 all trust')).toEqual([
      [{ value: 'host', quoted: false }],
      [
        { value: 'a', quoted: false },
        { value: 'b', quoted: false },
      ],
      [
        { value: 'user1', quoted: false },
        { value: 'user2', quoted: false },
        { value: 'user3', quoted: false },
      ],
      [{ value: 'all', quoted: false }],
      [{ value: 'trust', quoted: false }],
    ]);
    expect(splitHbaLine('host "q1""q2" "a , b" "#x" all trust')[1]).toEqual([{ value: 'q1"q2', quoted: true }]);
    expect(splitHbaLine('host "q1""q2" "a , b" "#x" all trust')[2]).toEqual([{ value: 'a , b', quoted: true }]);
    expect(splitHbaLine('host "q1""q2" "a , b" "#x" all trust')[3]).toEqual([{ value: '#x', quoted: true }]);
    expect(splitHbaLine('   # only a comment')).toEqual([]);
    expect(splitHbaLine('host "open')).toBe('unterminated quoted string');
    expect(splitHbaLine('host a,,b')).toBe('empty element in a comma-separated list');
    expect(splitHbaLine('host a,')).toBe('empty element in a comma-separated list');
  });
});

describe('matchHba: first matching rule wins', () => {
  const rules = parseHba(
    [
      '# TYPE  DATABASE  USER  ADDRESS  METHOD',
      'local   dbz       userz          trust',
      'local   all       all            md5',
      'hostssl all       all   10.0.0.0/8  scram-sha-256',
      'hostnossl all     all   11.0.0.0/8  md5',
      'host    all       all   127.0.0.0  255.255.255.0  password',
      'host    db1       all   0.0.0.0/0   md5',
      'host    all       user1 15.0.0.0/8  md5',
      'host    tmp,all   u1,u2 , u3  16.0.0.0/8  md5',
      'host    "all"     "all" 19.0.0.0/8  trust',
      'host    sameuser  all   20.0.0.0/8  trust',
      'host    mdb       muser 199.199.199.199/32 trust',
      'host    mdb       muser ::1/128     trust',
      'host    mdb       muser ff20::/12   md5',
      'host    mdb3      muser all         scram-sha-256',
      'host    mdb4      muser all         reject',
      'host    replication admin ::1/128  trust',
      'hostgssenc all    all   all         trust',
      'hostnogssenc gdb  all   all         password',
    ].join('\n'),
    'hba.conf',
  );

  it('tells local (Unix socket) clients from TCP ones', () => {
    expect(methodFor(rules, { local: true, database: 'dbz', user: 'userz' })).toBe('trust');
    expect(methodFor(rules, { local: true })).toBe('md5');
    expect(methodFor(rules, { local: false, address: '1.1.1.1', database: 'dbz', user: 'userz' })).toBe('reject');
  });

  it('hostssl only with TLS, hostnossl only without', () => {
    expect(methodFor(rules, { address: '10.1.1.1', tls: true })).toBe('scram-sha-256');
    expect(methodFor(rules, { address: '10.1.1.1', tls: false })).toBe('reject');
    expect(methodFor(rules, { address: '11.1.1.1', tls: true })).toBe('reject');
    expect(methodFor(rules, { address: '11.1.1.1', tls: false })).toBe('md5');
  });

  it('addresses: CIDR, address and mask, IPv6, all, IPv4 clients seen as IPv6', () => {
    expect(methodFor(rules, { address: '127.0.0.3' })).toBe('password');
    expect(methodFor(rules, { address: '127.0.1.4' })).toBe('reject');
    expect(methodFor(rules, { address: '::ffff:127.0.0.3' })).toBe('password');
    expect(methodFor(rules, { address: '199.199.199.199', database: 'mdb', user: 'muser' })).toBe('trust');
    expect(methodFor(rules, { address: '199.199.199.198', database: 'mdb', user: 'muser' })).toBe('reject');
    expect(methodFor(rules, { address: '::1', database: 'mdb', user: 'muser' })).toBe('trust');
    expect(methodFor(rules, { address: '::2', database: 'mdb', user: 'muser' })).toBe('reject');
    expect(methodFor(rules, { address: 'ff22:3::1', database: 'mdb', user: 'muser' })).toBe('md5');
    expect(methodFor(rules, { address: '1.2.3.4', database: 'mdb3', user: 'muser' })).toBe('scram-sha-256');
    expect(methodFor(rules, { address: 'face::1', database: 'mdb3', user: 'muser' })).toBe('scram-sha-256');
    expect(methodFor(rules, { address: '1.2.3.4', database: 'mdb4', user: 'muser' })).toBe('reject');
  });

  it('database and user lists, keywords only when unquoted, sameuser', () => {
    expect(methodFor(rules, { address: '1.0.0.1', database: 'db1' })).toBe('md5');
    expect(methodFor(rules, { address: '1.0.0.1', database: 'db1x' })).toBe('reject');
    expect(methodFor(rules, { address: '15.0.0.1', user: 'user1' })).toBe('md5');
    expect(methodFor(rules, { address: '15.0.0.1', user: 'user2' })).toBe('reject');
    for (const user of ['u1', 'u2', 'u3']) expect(methodFor(rules, { address: '16.0.0.1', user })).toBe('md5');
    expect(methodFor(rules, { address: '16.0.0.1', user: 'u4' })).toBe('reject');
    // Quoted "all" is a database and a user named all.
    expect(methodFor(rules, { address: '19.0.0.2' })).toBe('reject');
    expect(methodFor(rules, { address: '19.0.0.2', database: 'all', user: 'all' })).toBe('trust');
    expect(methodFor(rules, { address: '20.0.0.2', database: 'bob', user: 'bob' })).toBe('trust');
    expect(methodFor(rules, { address: '20.0.0.2', database: 'bob', user: 'alice' })).toBe('reject');
  });

  it('replication connections match only the replication keyword, and it matches nothing else', () => {
    expect(methodFor(rules, { address: '::1', database: 'mdb', user: 'admin', replication: true })).toBe('trust');
    expect(methodFor(rules, { address: '::1', database: 'replication', user: 'admin' })).toBe('reject');
    expect(methodFor(rules, { address: '199.199.199.199', database: 'mdb', user: 'muser', replication: true })).toBe('reject');
  });

  it('hostgssenc never matches (no GSSAPI encryption); hostnogssenc is any TCP client', () => {
    expect(methodFor(rules, { address: '8.8.8.8', database: 'gdb' })).toBe('password');
    expect(methodFor(rules, { address: '8.8.8.8', database: 'gdb', tls: true })).toBe('password');
  });

  it('the rule found says where it was written', () => {
    expect(matchHba(rules, client({ address: '127.0.0.3' }))).toMatchObject({ file: 'hba.conf', line: 6, method: 'password' });
  });
});

describe('parseHba refuses what pgmux cannot honour, every line at once', () => {
  it('names each problem with its line', () => {
    const problems = problemsOf(
      [
        'host all +admins 10.0.0.0/8 md5',
        'host samerole all 10.0.0.0/8 md5',
        'host all all db.example.com md5',
        'host all all samenet md5',
        'host all all 10.0.0.0/8 cert',
        'local all all peer',
        'host all all 10.0.0.0/8 md5 clientcert=verify-full',
        'host all all 10.0.0.0/8 kerberos',
        'hostx all all 10.0.0.0/8 md5',
        'host all all',
        'host all all 10.0.0.0/33 md5',
        'host all all 10.0.0.0 255.0.255.0 md5',
        'include other.conf',
        'host all all 10.0.0.0/8 trust',
      ].join('\n'),
    );
    expect(problems).toEqual([
      'hba.conf:1: user "+admins": group membership (+role) is not supported: pgmux does not look up role membership; list the users, or name a file of them with @file',
      'hba.conf:2: database "samerole" is not supported: pgmux does not look up role membership; list the databases',
      'hba.conf:3: address "db.example.com": host names are not supported; give an IP address with a CIDR mask, or all',
      'hba.conf:4: address "samenet" is not supported; give the addresses in CIDR form',
      'hba.conf:5: authentication method "cert" is not supported: pgmux does not check client certificates',
      'hba.conf:6: authentication method "peer" is not supported: pgmux cannot read the peer credentials of a Unix-socket client',
      'hba.conf:7: options after the method are not supported (clientcert=verify-full)',
      'hba.conf:8: invalid authentication method "kerberos"',
      'hba.conf:9: invalid connection type "hostx"',
      'hba.conf:10: end-of-line before address specification',
      'hba.conf:11: invalid CIDR mask in address "10.0.0.0/33"',
      'hba.conf:12: invalid IP mask "255.0.255.0"',
      'hba.conf:13: include is not supported; put the rules in this file',
    ]);
  });

  it('a quoted +name is a user name, not a group', () => {
    const rules = parseHba('host all "+x" all trust', 'hba.conf');
    expect(methodFor(rules, { address: '1.1.1.1', user: '+x' })).toBe('trust');
  });
});

describe('loadHba', () => {
  it('reads @files of names relative to the file, nested, and reports a missing one', async () => {
    const dir = await tempDir('pgmux-hba-');
    await mkdir(path.join(dir, 'lists'));
    await writeFile(path.join(dir, 'lists', 'users.txt'), '# staff\nalice, bob\n@more.txt\n');
    await writeFile(path.join(dir, 'lists', 'more.txt'), 'carol\n');
    await writeFile(path.join(dir, 'dbs.txt'), 'sales reports\n');
    const file = path.join(dir, 'hba.conf');
    await writeFile(file, 'host @dbs.txt @lists/users.txt 127.0.0.1/32 trust\n');
    const rules = loadHba(file);
    for (const user of ['alice', 'bob', 'carol']) expect(methodFor(rules, { database: 'reports', user })).toBe('trust');
    expect(methodFor(rules, { database: 'reports', user: 'dave' })).toBe('reject');
    expect(methodFor(rules, { database: 'other', user: 'alice' })).toBe('reject');

    await writeFile(file, 'host all @nowhere.txt 127.0.0.1/32 trust\n');
    expect(() => loadHba(file)).toThrow(/hba.conf:1: cannot read @nowhere.txt/);
    expect(() => loadHba(path.join(dir, 'absent.conf'))).toThrow(/auth_hba_file ".*absent.conf" does not exist/);
  });
});
