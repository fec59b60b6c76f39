import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseUserlist } from '../src/auth/userlist.ts';
import { credentialFromSecret } from '../src/auth/credential.ts';
import { md5Response, md5ResponseFromPassword, md5Secret } from '../src/protocol/md5.ts';
import { formatScramVerifier, scramVerifierFromPassword } from '../src/protocol/scram.ts';

describe('parseUserlist (PgBouncer auth_file)', () => {
  it('reads "user" "password" lines, skipping comments and blank lines', () => {
    const text = [
      '; PgBouncer comment',
      '# another comment',
      '',
      '   ',
      '"app" "secret"',
      '\t"admin"\t"md545f2603610af569b6155c45067268c6b"  ',
      '"scram" "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB"',
    ].join('\n');
    expect(parseUserlist(text)).toEqual(
      new Map([
        ['app', 'secret'],
        ['admin', 'md545f2603610af569b6155c45067268c6b'],
        ['scram', 'SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB'],
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
  ])('refuses %s, naming the line', (_why, line) => {
    expect(() => parseUserlist(`"ok" "fine"\n\n${line}\n"also" "fine"`)).toThrow(/line 3\b/);
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

  it('only ever throws an Error naming a line', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        try {
          parseUserlist(text);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          expect((err as Error).message).toMatch(/^auth file line \d+: /);
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
