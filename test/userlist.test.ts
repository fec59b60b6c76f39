import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { loadUserlist, parseUserlist } from '../src/auth/userlist.ts';
import { ConfigError } from '../src/config/errors.ts';
import { credentialFromSecret } from '../src/auth/credential.ts';
import { md5Response, md5ResponseFromPassword, md5Secret } from '../src/protocol/md5.ts';
import { formatScramVerifier, scramVerifierFromPassword } from '../src/protocol/scram.ts';

describe('parseUserlist (PgBouncer auth_file)', () => {
  it('reads "user" "password" lines, skipping comments and blank lines', () => {
    const verifier = formatScramVerifier(scramVerifierFromPassword('pencil'));
    const text = [
      '; PgBouncer comment',
      '# another comment',
      '',
      '   ',
      '"app" "secret"',
      '\t"admin"\t"md545f2603610af569b6155c45067268c6b"  ',
      `"scram" "${verifier}"`,
    ].join('\n');
    expect(parseUserlist(text)).toEqual(
      new Map([
        ['app', 'secret'],
        ['admin', 'md545f2603610af569b6155c45067268c6b'],
        ['scram', verifier],
      ]),
    );
  });

  it('unescapes doubled double quotes', () => {
    expect(parseUserlist('"a""b" "p""w"""\n"""" ""')).toEqual(
      new Map([
        ['a"b', 'p"w"'],
        ['"', ''],
      ]),
    );
  });

  it('keeps spaces and other characters inside quotes verbatim', () => {
    expect(parseUserlist('"user name" " p; #w\\ é "')).toEqual(new Map([['user name', ' p; #w\\ é ']]));
  });

  it('ignores whatever follows the second field (old pg_auth files have more columns)', () => {
    expect(parseUserlist('"app" "secret" "" extra stuff\n"b" "c"x')).toEqual(
      new Map([
        ['app', 'secret'],
        ['b', 'c'],
      ]),
    );
  });

  it('accepts CRLF line ends, a BOM and no final newline', () => {
    expect(parseUserlist('\uFEFF"a" "1"\r\n"b" "2"')).toEqual(
      new Map([
        ['a', '1'],
        ['b', '2'],
      ]),
    );
  });

  it('a user listed twice keeps the last entry', () => {
    expect(parseUserlist('"a" "1"\n"a" "2"')).toEqual(new Map([['a', '2']]));
  });

  it.each([
    ['unquoted user', 'app "secret"'],
    ['unquoted password', '"app" secret'],
    ['missing password', '"app"'],
    ['missing password, trailing blanks', '"app"   '],
    ['unterminated user', '"app secret'],
    ['unterminated password', '"app" "secret'],
    ['escape swallowing the closing quote', '"app" "secret""'],
    ['fields run together', '"app""secret"'],
    ['empty user name', '"" "secret"'],
    ['text before the first field', 'x "app" "secret"'],
  ])('refuses %s, naming the file and line', (_why, line) => {
    expect(() => parseUserlist(`"ok" "fine"\n\n${line}\n"also" "fine"`, '/etc/pgmux/userlist.txt')).toThrow(/^\/etc\/pgmux\/userlist\.txt:3: /);
  });

  it('reports every bad line at once, one problem each, never quoting a secret', () => {
    const text = ['"ok" "fine"', '"app" hunter2', 'root "x"', '"bob" "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB"', '"eve" "open-ended'].join('\n');
    const err = (() => {
      try {
        parseUserlist(text, 'userlist.txt');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      'userlist.txt:2: user "app": expected a double-quoted password, found unquoted text',
      'userlist.txt:3: expected a double-quoted user name, found unquoted text',
      'userlist.txt:4: user "bob": malformed SCRAM verifier; expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> as pg_authid.rolpassword holds it',
      'userlist.txt:5: user "eve": unterminated quoted password',
    ]);
    for (const secret of ['hunter2', "'h'", 'c2FsdA', 'AAAA', 'open-ended']) expect((err as Error).message).not.toContain(secret);
  });

  it('refuses a SCRAM verifier that does not parse, whatever part is wrong', () => {
    const good = formatScramVerifier(scramVerifierFromPassword('pencil'));
    const [head, keys] = good.split('$').slice(1);
    for (const bad of [
      `SCRAM-SHA-256$${head}`, // keys cut off
      `SCRAM-SHA-256$${head}$${keys.slice(0, -4)}`, // ServerKey truncated
      `SCRAM-SHA-256$x:${head.split(':')[1]}$${keys}`, // iterations not a number
      'SCRAM-SHA-256$',
    ]) {
      expect(() => parseUserlist(`"u" "${bad}"`)).toThrow(/^auth_file:1: user "u": malformed SCRAM verifier/);
    }
  });

  it('a missing file is a ConfigError naming it', async () => {
    await expect(loadUserlist('/nonexistent/userlist.txt')).rejects.toThrow(ConfigError);
    await expect(loadUserlist('/nonexistent/userlist.txt')).rejects.toThrow('auth_file "/nonexistent/userlist.txt" does not exist');
  });

  it('round-trips any user and password written in the documented format', () => {
    const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
    const field = fc.string().filter((s) => !/[\r\n]/.test(s));
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(field.filter((s) => s !== ''), field), { selector: ([u]) => u }), (entries) => {
        const text = entries.map(([u, p]) => `${quote(u)} ${quote(p)}`).join('\n');
        expect(parseUserlist(text)).toEqual(new Map(entries));
      }),
    );
  });

  it('only ever throws a ConfigError whose every problem names a line', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        try {
          parseUserlist(text);
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          for (const p of (err as ConfigError).problems) expect(p).toMatch(/^auth_file:\d+: /);
        }
      }),
    );
  });
});

describe('md5', () => {
  // Values computed by PostgreSQL 15: SELECT 'md5' || md5('secretpostgres'),
  // and the rolpassword of CREATE ROLE postgres2 PASSWORD 'secret' with
  // password_encryption = md5.
  it('md5Secret matches PostgreSQL', () => {
    expect(md5Secret('postgres', 'secret')).toBe('md553f48b7c4b76a86ce72276c5755f217d');
    expect(md5Secret('postgres2', 'secret')).toBe('md5a99489f2ba8d41137689bf5947f835e0');
    // PgBouncer's documented example.
    expect(md5Secret('admin', '1234')).toBe('md545f2603610af569b6155c45067268c6b');
    // Strings are hashed as UTF-8.
    expect(md5Secret('user', 'pässwörd')).toBe('md5281c73bbb009775082b255082f266672');
  });

  it('md5Response hashes the secret\'s hex digits with the raw salt bytes', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    expect(md5Response('md553f48b7c4b76a86ce72276c5755f217d', salt)).toBe('md5bb41a296aab6baccb36ff243a562abff');
    expect(md5ResponseFromPassword('postgres', 'secret', salt)).toBe('md5bb41a296aab6baccb36ff243a562abff');
    expect(md5ResponseFromPassword('postgres', 'secret', Buffer.from([1, 2, 3, 5]))).not.toBe('md5bb41a296aab6baccb36ff243a562abff');
  });
});

describe('credentialFromSecret', () => {
  it('recognizes SCRAM verifiers', () => {
    const verifier = scramVerifierFromPassword('pencil');
    expect(credentialFromSecret(formatScramVerifier(verifier))).toEqual({ kind: 'scram', verifier });
  });

  it('recognizes md5 secrets exactly as PostgreSQL does', () => {
    expect(credentialFromSecret('md553f48b7c4b76a86ce72276c5755f217d')).toEqual({ kind: 'md5', secret: 'md553f48b7c4b76a86ce72276c5755f217d' });
    // Upper-case hex, wrong length or a different prefix: a plaintext password.
    for (const s of ['md553F48B7C4B76A86CE72276C5755F217D', 'md553f48b7c4b76a86ce72276c5755f217', 'MD553f48b7c4b76a86ce72276c5755f217d']) {
      expect(credentialFromSecret(s)).toEqual({ kind: 'password', password: s });
    }
  });

  it('takes anything else, malformed SCRAM strings included, as a plaintext password', () => {
    for (const s of ['secret', '', 'SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB', 'SCRAM-SHA-256$']) {
      expect(credentialFromSecret(s)).toEqual({ kind: 'password', password: s });
    }
  });
});
