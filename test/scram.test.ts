import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import {
  ScramClientSession,
  ScramError,
  ScramServerSession,
  formatScramVerifier,
  parseScramVerifier,
  saslPrep,
  scramVerifierFromPassword,
  type ScramVerifier,
} from '../src/protocol/scram.ts';

// RFC 7677 section 3, the SCRAM-SHA-256 example exchange.
const RFC = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

const mockSecret = Buffer.from('0123456789abcdef0123456789abcdef');
const pencil = scramVerifierFromPassword(RFC.password, RFC.salt, RFC.iterations);

function server(verifier: ScramVerifier | null, opts: { user?: string; nonce?: string; secret?: Buffer } = {}): ScramServerSession {
  return new ScramServerSession({ verifier, user: opts.user ?? 'app', mockSecret: opts.secret ?? mockSecret, nonce: opts.nonce });
}

/** Runs a whole exchange; returns what the server's last step produced. */
function exchange(s: ScramServerSession, c: ScramClientSession): { serverFinal: string; clientKey: Buffer } {
  const serverFirst = s.clientFirst(c.clientFirst());
  const result = s.clientFinal(c.serverFirst(serverFirst));
  c.serverFinal(result.serverFinal);
  return result;
}

function sqlstateOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(ScramError);
    return (err as ScramError).sqlstate;
  }
  throw new Error('expected a ScramError');
}

/** A server session that has answered a client-first-message with client nonce "abc". */
function continued(verifier: ScramVerifier | null = pencil, gs2 = 'n,,'): ScramServerSession {
  const s = server(verifier, { nonce: 'SRV' });
  s.clientFirst(`${gs2}n=,r=abc`);
  return s;
}

const goodProof = Buffer.alloc(32).toString('base64');

describe('SCRAM-SHA-256 transcript (RFC 7677)', () => {
  it('the client produces the RFC client-final and accepts the RFC server-final', () => {
    const c = new ScramClientSession({ password: RFC.password, nonce: RFC.clientNonce, user: RFC.user });
    expect(c.clientFirst()).toBe(RFC.clientFirst);
    expect(c.serverFirst(RFC.serverFirst)).toBe(RFC.clientFinal);
    expect(() => c.serverFinal(RFC.serverFinal)).not.toThrow();
  });

  it('the server produces the RFC server-first and server-final', () => {
    const s = server(pencil, { user: RFC.user, nonce: RFC.serverNonce });
    expect(s.clientFirst(RFC.clientFirst)).toBe(RFC.serverFirst);
    const { serverFinal, clientKey } = s.clientFinal(RFC.clientFinal);
    expect(serverFinal).toBe(RFC.serverFinal);
    const salted = pbkdf2Sync('pencil', RFC.salt, 4096, 32, 'sha256');
    expect(clientKey).toEqual(createHmac('sha256', salted).update('Client Key').digest());
  });

  it('the client sends an empty SASL user name by default, as libpq does', () => {
    expect(new ScramClientSession({ password: 'x', nonce: 'abc' }).clientFirst()).toBe('n,,n=,r=abc');
    expect(new ScramClientSession({ password: 'x', nonce: 'abc', user: 'a=b,c' }).clientFirst()).toBe('n,,n=a=3Db=2Cc,r=abc');
  });

  it('the server ignores the SASL user name', () => {
    const a = server(pencil, { nonce: 'S' }).clientFirst('n,,n=,r=abc');
    const b = server(pencil, { nonce: 'S' }).clientFirst('n,,n=somebody-else,r=abc');
    expect(a).toBe(b);
  });
});

describe('verifiers', () => {
  // Made by PostgreSQL 15 (CREATE ROLE ... PASSWORD with password_encryption
  // = scram-sha-256): each covers a SASLprep case.
  const fromPostgres: [string, string][] = [
    ['pencil', 'SCRAM-SHA-256$4096:XkkBrZhjwpx2tdOt61s0ww==$1IwzvXsOUXz1USFlPJa7JXHYD0TA1onnLJvqjUEOGAc=:RC7MqJQNo8oV0Mqm614hMZiRy3ZyI+XwLLkI4c3Gsoo='],
    // soft hyphen mapped to nothing
    ['I\u00adX', 'SCRAM-SHA-256$4096:kqg/aqimTC/NrOYzvTTR5w==$3fTbMl3hotE6SdwwuIOxTewyKRGp3eZBQKDDHNbZoG8=:lGRyL5x1g20cYoT7u6BJZ5GfifuQFZMiyrTvodKSTxU='],
    // NFKC: full-width letters, ligature, decomposed accent
    ['\uff50\uff41\uff53\uff53', 'SCRAM-SHA-256$4096:tlpzevfIHZnwTPRN1dcAcQ==$sWTM9eCoAKZFZb/Rvww43/VcJbyA/Jx/jwseseGcyKs=:YduXkVGOBvPzlEkZ2gcnodq5H+3zYBxbeEZCq8EZHs0='],
    ['\ufb01le', 'SCRAM-SHA-256$4096:s2Cw690XZ9j1FiQmpyqRAw==$rzjKoJsBtm9yeduKxQKXm0G/jygwf98COy9JHH7chrU=:SLh62sdiZcyWy8SIFrZjCJHt3AiEp+0OROaXf4hFvnU='],
    ['cafe\u0301', 'SCRAM-SHA-256$4096:40RO0YR8TVx6MMSSTT2EvQ==$F1YHwEv3092q0DPPEahPIiOWfwR/V+D7a6lPAe5DiFk=:8QtHfaA3FnWo/lZ0EevTiRPILvIgw+LCY3rScNgZ80c='],
    // zero width space mapped to a space
    ['p\u200bx', 'SCRAM-SHA-256$4096:rNY68eGPiHhYpH2FYn1ikA==$SrTZrMGzfbx6i9CM/Ua/l5zdTkpW+1RExJq1CPjojTY=:2HqKNNuVPiqWWh7qmL2ryMpBtOoSoAYoOcJDcNKA7lY='],
    // ASCII passes untouched, control characters included
    ['\u0007bell', 'SCRAM-SHA-256$4096:UHqbCPlJ2RiaT1CRSjOQOA==$ru2pVSXSFfBQcOmOFX4XfCzhYfCJNuh46X53TUeENa8=:EydouvW+haMPoSNQOUefBnXnoh5nwqCoU+LpAiYxaN4='],
    // refused by SASLprep, so used raw: unassigned in Unicode 3.2, empty after mapping, bidi violation
    ['\u{1f600}p\u00e4ssword', 'SCRAM-SHA-256$4096:Nm06S9KYHV05jw+SLzms4A==$yyjftXmQraSIt2Th760pxcpx9VNEMdWOdbAE99VrlTQ=:d+W//j4gCzk2Z+0vemT9YJ117pLWGkAQLqKgSeTLrh0='],
    ['\u00ad', 'SCRAM-SHA-256$4096:PE932NYZE01jlNmq20jctg==$xSGMF97XvGqZGh4CSzAiy9pdKHOOvsuNJcbmS1gEKrQ=:PyAhnKN/OPXWkwFzUfAMHnP8adkrAd79lIpaiNwzf/Y='],
    ['\u0627abc\u0627', 'SCRAM-SHA-256$4096:3iyDcWhiC/dicGfo7J0WRw==$NSAhsuVkYaKZxxvDGmZ6piwuuTfNeh8lzRsI9F8rMw8=:bmqiMbMik5JmJyNST/To66Eo5NEQSNWXhkV+mZ0V2cg='],
    // right-to-left text that passes
    ['\u0627\u0644\u0639\u0631\u0628\u064a\u0629', 'SCRAM-SHA-256$4096:dPq4YMKtAQ5YuNgXqEiQbg==$DFSnGYecqqv3XYozh6l/x57N/sqdjGTKodQpIKerCfM=:iy+DmEBpaj+/RqNYGffRg6KLMMaJR5+XmkoW4l7FRlk='],
  ];

  it.each(fromPostgres)('derives what PostgreSQL stores for %j', (password, stored) => {
    const v = parseScramVerifier(stored)!;
    expect(v).not.toBeNull();
    expect(formatScramVerifier(scramVerifierFromPassword(password, v.salt, v.iterations))).toBe(stored);
  });

  it('parses and formats round trip', () => {
    const text = formatScramVerifier(pencil);
    expect(text).toMatch(/^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    expect(parseScramVerifier(text)).toEqual(pencil);
  });

  it('defaults to a fresh 16-byte salt and 4096 iterations', () => {
    const a = scramVerifierFromPassword('x');
    const b = scramVerifierFromPassword('x');
    expect(a.iterations).toBe(4096);
    expect(a.salt.length).toBe(16);
    expect(a.salt).not.toEqual(b.salt);
  });

  it.each([
    '',
    'pencil',
    'md5a99489f2ba8d41137689bf5947f835e0',
    'SCRAM-SHA-256$',
    'SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$4096:$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$4096:not*base64$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=x',
  ])('refuses %j', (text) => {
    expect(parseScramVerifier(text)).toBeNull();
  });
});

describe('SASLprep', () => {
  it.each([
    // RFC 4013 section 3 examples, except where PostgreSQL differs
    ['I\u00adX', 'IX'],
    ['user', 'user'],
    ['USER', 'USER'],
    ['\u00aa', 'a'],
    ['\u2168', 'IX'],
    // PostgreSQL passes any pure ASCII string through, controls included
    ['\u0007', '\u0007'],
    ['', ''],
    ['\u00a0x', ' x'],
    ['\u212b', '\u00c5'],
  ])('%j -> %j', (input, output) => {
    expect(saslPrep(input)).toBe(output);
  });

  it.each([
    ['bidi: RandALCat first but not last', '\u0627\u0031'],
    ['bidi: RandALCat mixed with LCat', '\u0627a\u0627'],
    ['maps to nothing', '\u00ad\u200d'],
    ['prohibited (private use)', 'x\ue000'],
    ['prohibited (non-ASCII control)', 'x\u0085'],
    ['unassigned in Unicode 3.2', 'x\u0221'],
    ['lone surrogate', 'x\ud800'],
  ])('refuses: %s', (_why, input) => {
    expect(saslPrep(input)).toBeNull();
  });
});

describe('pass-through', () => {
  it('the server recovers the ClientKey; a client holding only that key logs in', () => {
    const first = exchange(server(pencil), new ScramClientSession({ password: 'pencil' }));
    const again = exchange(server(pencil), new ScramClientSession({ clientKey: first.clientKey, serverKey: pencil.serverKey }));
    expect(again.clientKey).toEqual(first.clientKey);
    // Without the ServerKey the client can still log in; it just cannot check the server.
    expect(() => exchange(server(pencil), new ScramClientSession({ clientKey: first.clientKey }))).not.toThrow();
  });

  it('a client holding the ServerKey refuses a server that does not know the verifier', () => {
    const { clientKey } = exchange(server(pencil), new ScramClientSession({ password: 'pencil' }));
    const c = new ScramClientSession({ clientKey, serverKey: Buffer.alloc(32, 7) });
    const s = server(pencil);
    const { serverFinal } = s.clientFinal(c.serverFirst(s.clientFirst(c.clientFirst())));
    expect(sqlstateOf(() => c.serverFinal(serverFinal))).toBe('08P01');
  });

  it('a password client refuses a forged server signature', () => {
    const c = new ScramClientSession({ password: 'pencil', nonce: RFC.clientNonce, user: 'user' });
    c.clientFirst();
    c.serverFirst(RFC.serverFirst);
    expect(sqlstateOf(() => c.serverFinal(`v=${Buffer.alloc(32).toString('base64')}`))).toBe('08P01');
  });
});

describe('failed authentication', () => {
  it('wrong password: 28P01 at client-final', () => {
    const s = server(pencil);
    const c = new ScramClientSession({ password: 'pencil!' });
    const final = c.serverFirst(s.clientFirst(c.clientFirst()));
    expect(sqlstateOf(() => s.clientFinal(final))).toBe('28P01');
  });

  it('unknown user: same steps, same 28P01, and a stable salt per user', () => {
    const serverFirsts: string[] = [];
    for (let i = 0; i < 2; i++) {
      const s = server(null, { user: 'nobody' });
      const c = new ScramClientSession({ password: 'guess', nonce: 'abc' });
      const serverFirst = s.clientFirst(c.clientFirst());
      serverFirsts.push(serverFirst.replace(/^r=[^,]*,/, ''));
      const final = c.serverFirst(serverFirst);
      let err: unknown;
      try {
        s.clientFinal(final);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ScramError);
      expect((err as ScramError).sqlstate).toBe('28P01');
      expect((err as ScramError).message).toBe('password authentication failed for user "nobody"');
    }
    expect(serverFirsts[0]).toBe(serverFirsts[1]);
    expect(serverFirsts[0]).toMatch(/^s=[A-Za-z0-9+/]{22}==,i=4096$/);
    const other = server(null, { user: 'somebody' }).clientFirst('n,,n=,r=abc');
    expect(other.replace(/^r=[^,]*,/, '')).not.toBe(serverFirsts[0]);
    const otherSecret = server(null, { user: 'nobody', secret: Buffer.from('another secret') }).clientFirst('n,,n=,r=abc');
    expect(otherSecret.replace(/^r=[^,]*,/, '')).not.toBe(serverFirsts[0]);
  });

  it('an unknown user fails even with a proof that matches the mock verifier', () => {
    // Whoever guessed the mock secret still gets nowhere.
    const salt = createHmac('sha256', mockSecret).update('nobody').digest().subarray(0, 16);
    const s = server(null, { user: 'nobody', nonce: 'S' });
    expect(s.clientFirst('n,,n=,r=abc')).toBe(`r=abcS,s=${salt.toString('base64')},i=4096`);
    expect(sqlstateOf(() => s.clientFinal(`c=biws,r=abcS,p=${goodProof}`))).toBe('28P01');
  });
});

describe('protocol violations', () => {
  it.each([
    ['empty', '', '08P01'],
    ['header only', 'n,,', '08P01'],
    ['no comma after the flag', 'n', '08P01'],
    ['unknown channel-binding flag', 'x,,n=,r=abc', '08P01'],
    ['channel binding requested (we never offer -PLUS)', 'p=tls-server-end-point,,n=,r=abc', '08P01'],
    ['authzid', 'n,a=admin,n=,r=abc', '0A000'],
    ['garbage in the GS2 header', 'n,x,n=,r=abc', '08P01'],
    ['mandatory extension', 'n,,m=ext,n=,r=abc', '0A000'],
    ['missing user name', 'n,,r=abc', '08P01'],
    ['missing nonce', 'n,,n=', '08P01'],
    ['attributes out of order', 'n,,r=abc,n=', '08P01'],
    ['empty nonce', 'n,,n=,r=', '08P01'],
    ['nonce with a space', 'n,,n=,r=a c', '08P01'],
    ['non-ASCII nonce', 'n,,n=,r=ab\u00e9', '08P01'],
    ['control character in the nonce', 'n,,n=,r=ab\u0001', '08P01'],
    ['trailing comma', 'n,,n=,r=abc,', '08P01'],
    ['empty attribute', 'n,,n=,,r=abc', '08P01'],
    ['extension without a value', 'n,,n=,r=abc,x=', '08P01'],
    ['not an attribute', 'n,,n=,r=abc,xyz', '08P01'],
    ['NUL', 'n,,n=\u0000,r=abc', '08P01'],
  ])('client-first: %s -> %s', (_why, message, sqlstate) => {
    expect(sqlstateOf(() => server(pencil).clientFirst(message))).toBe(sqlstate);
  });

  it('client-first accepts the "y" flag and ignores well-formed extensions', () => {
    expect(server(pencil, { nonce: 'S' }).clientFirst('y,,n=,r=abc')).toMatch(/^r=abcS,/);
    expect(server(pencil, { nonce: 'S' }).clientFirst('n,,n=,r=abc,x=1,y=a=b')).toMatch(/^r=abcS,/);
  });

  it.each([
    ['empty', ''],
    ['no proof', 'c=biws,r=abcSRV'],
    ['attributes out of order', `r=abcSRV,c=biws,p=${goodProof}`],
    ['proof not last', `c=biws,r=abcSRV,p=${goodProof},x=1`],
    ['two proofs', `c=biws,r=abcSRV,p=${goodProof},p=${goodProof}`],
    ['proof not base64', 'c=biws,r=abcSRV,p=not*base64'],
    ['proof too short', 'c=biws,r=abcSRV,p=AAAA'],
    ['non-canonical base64 proof', `c=biws,r=abcSRV,p=${goodProof.slice(0, -2)}B=`],
    ['empty extension', `c=biws,r=abcSRV,x=,p=${goodProof}`],
    ['nonce mismatch', `c=biws,r=abcSRX,p=${goodProof}`],
    ['client nonce only', `c=biws,r=abc,p=${goodProof}`],
    ['channel binding for "y" after "n"', `c=eSws,r=abcSRV,p=${goodProof}`],
    ['channel binding data after "n"', `c=${Buffer.from('p=tls-server-end-point,,xyz').toString('base64')},r=abcSRV,p=${goodProof}`],
    ['channel binding not base64', `c=biws!,r=abcSRV,p=${goodProof}`],
    ['trailing comma', `c=biws,r=abcSRV,p=${goodProof},`],
  ])('client-final: %s -> 08P01', (_why, message) => {
    expect(sqlstateOf(() => continued().clientFinal(message))).toBe('08P01');
  });

  it('client-final must echo the "y" header when the client sent "y"', () => {
    expect(sqlstateOf(() => continued(pencil, 'y,,').clientFinal(`c=biws,r=abcSRV,p=${goodProof}`))).toBe('08P01');
    // With the right echo, the only problem left is the proof.
    expect(sqlstateOf(() => continued(pencil, 'y,,').clientFinal(`c=eSws,r=abcSRV,p=${goodProof}`))).toBe('28P01');
    expect(sqlstateOf(() => continued().clientFinal(`c=biws,r=abcSRV,x=ext,p=${goodProof}`))).toBe('28P01');
  });

  it('steps out of order, repeated or replayed', () => {
    expect(sqlstateOf(() => server(pencil).clientFinal(`c=biws,r=abc,p=${goodProof}`))).toBe('08P01');

    const twice = server(pencil);
    twice.clientFirst('n,,n=,r=abc');
    expect(sqlstateOf(() => twice.clientFirst('n,,n=,r=abc'))).toBe('08P01');

    // A successful client-final cannot be replayed, on the same session or a new one.
    const s = server(pencil);
    const c = new ScramClientSession({ password: 'pencil', nonce: 'abc' });
    const first = c.clientFirst();
    const final = c.serverFirst(s.clientFirst(first));
    s.clientFinal(final);
    expect(sqlstateOf(() => s.clientFinal(final))).toBe('08P01');
    const fresh = server(pencil);
    fresh.clientFirst(first);
    expect(sqlstateOf(() => fresh.clientFinal(final))).toBe('08P01');

    // A step that failed ends the exchange.
    const failed = server(pencil);
    expect(sqlstateOf(() => failed.clientFirst('garbage'))).toBe('08P01');
    expect(sqlstateOf(() => failed.clientFirst('n,,n=,r=abc'))).toBe('08P01');
  });

  it('client side: steps out of order', () => {
    const c = new ScramClientSession({ password: 'pencil', nonce: RFC.clientNonce });
    expect(sqlstateOf(() => c.serverFirst(RFC.serverFirst))).toBe('08P01');
    expect(sqlstateOf(() => c.serverFinal(RFC.serverFinal))).toBe('08P01');
    c.clientFirst();
    expect(sqlstateOf(() => c.clientFirst())).toBe('08P01');
    expect(sqlstateOf(() => c.serverFinal(RFC.serverFinal))).toBe('08P01');
  });

  it.each([
    ['empty', '', '08P01'],
    ['nonce not extending ours', 'r=XXXXXX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', '08P01'],
    ['nonce merely echoed', 'r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', '08P01'],
    ['nonce with a space', 'r=abc d,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', '08P01'],
    ['mandatory extension', 'm=x,r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', '0A000'],
    ['missing salt', 'r=abcS,i=4096', '08P01'],
    ['empty salt', 'r=abcS,s=,i=4096', '08P01'],
    ['bad salt', 'r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096', '08P01'],
    ['zero iterations', 'r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0', '08P01'],
    ['negative iterations', 'r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1', '08P01'],
    ['huge iterations', 'r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967296', '08P01'],
    ['iterations not a number', 'r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=12x', '08P01'],
    ['attributes out of order', 's=W22ZaJ0SNY7soEsUEjb6gQ==,r=abcS,i=4096', '08P01'],
  ])('server-first: %s -> %s', (_why, message, sqlstate) => {
    const c = new ScramClientSession({ password: 'pencil', nonce: 'abc' });
    c.clientFirst();
    expect(sqlstateOf(() => c.serverFirst(message))).toBe(sqlstate);
  });

  it.each([
    ['server error', 'e=invalid-proof', '28P01'],
    ['empty', '', '08P01'],
    ['not base64', 'v=!!!', '08P01'],
    ['short signature', 'v=AAAA', '08P01'],
    ['unknown attribute', 'x=1', '08P01'],
  ])('server-final: %s -> %s', (_why, message, sqlstate) => {
    const c = new ScramClientSession({ password: 'pencil', nonce: RFC.clientNonce, user: 'user' });
    c.clientFirst();
    c.serverFirst(RFC.serverFirst);
    expect(sqlstateOf(() => c.serverFinal(message))).toBe(sqlstate);
  });
});

describe('arbitrary input only ever raises ScramError', () => {
  const onlyScramErrors = (f: () => unknown): void => {
    try {
      f();
    } catch (err) {
      if (!(err instanceof ScramError)) throw err;
      expect(['08P01', '28P01', '0A000']).toContain(err.sqlstate);
    }
  };
  const text = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('utf8')),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  // Messages built from plausible pieces reach the deeper checks.
  const piece = fc.oneof(
    fc.constantFrom('n', 'y', 'p=x', '', 'a=x', 'm=x', 'n=', 'r=abc', 'r=abcSRV', 'c=biws', 'c=eSws', `p=${goodProof}`, 'p=AAAA', 'x=1', 'v=AAAA', 'e=bad', 's=W22ZaJ0SNY7soEsUEjb6gQ==', 'i=4096', 'i=0'),
    fc.string({ maxLength: 8 }),
  );
  const structured = fc.array(piece, { maxLength: 8 }).map((parts) => parts.join(','));
  const message = fc.oneof(text, structured);

  it('server: clientFirst', () => {
    fc.assert(fc.property(message, (m) => onlyScramErrors(() => server(pencil).clientFirst(m))));
    fc.assert(fc.property(message, (m) => onlyScramErrors(() => server(null).clientFirst(m))));
  });

  it('server: clientFinal', () => {
    fc.assert(fc.property(message, (m) => onlyScramErrors(() => continued().clientFinal(m))));
    fc.assert(fc.property(message, (m) => onlyScramErrors(() => continued(null).clientFinal(m))));
    fc.assert(fc.property(message, (m) => onlyScramErrors(() => server(pencil).clientFinal(m))));
  });

  it('server: random proofs are refused with 28P01', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const proof = Buffer.from(bytes).toString('base64');
        expect(sqlstateOf(() => continued().clientFinal(`c=biws,r=abcSRV,p=${proof}`))).toBe('28P01');
      }),
      { numRuns: 50 },
    );
  });

  it('client: serverFirst and serverFinal', () => {
    fc.assert(
      fc.property(message, (m) => {
        const c = new ScramClientSession({ clientKey: Buffer.alloc(32, 1), serverKey: Buffer.alloc(32, 2), nonce: 'abc' });
        c.clientFirst();
        onlyScramErrors(() => c.serverFirst(m));
      }),
    );
    fc.assert(
      fc.property(message, (m) => {
        const c = new ScramClientSession({ clientKey: Buffer.alloc(32, 1), serverKey: Buffer.alloc(32, 2), nonce: 'abc' });
        c.clientFirst();
        c.serverFirst('r=abcS,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1');
        onlyScramErrors(() => c.serverFinal(m));
      }),
    );
  });

  it('SASLprep never throws', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => void saslPrep(s)));
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const once = saslPrep(s);
        // Where it succeeds, the result is NFKC-normalized text.
        if (once !== null) expect(once.normalize('NFKC')).toBe(once);
      }),
    );
  });
});

describe('constructors', () => {
  it('a client needs a password or a 32-byte key; nonces must be printable', () => {
    expect(() => new ScramClientSession({})).toThrow(TypeError);
    expect(() => new ScramClientSession({ clientKey: Buffer.alloc(16) })).toThrow(TypeError);
    expect(() => new ScramClientSession({ password: 'x', nonce: 'a,b' })).toThrow(TypeError);
    expect(() => new ScramServerSession({ verifier: pencil, user: 'u', mockSecret, nonce: '' })).toThrow(TypeError);
  });

  it('default nonces are fresh', () => {
    const a = new ScramClientSession({ password: 'x' }).clientFirst();
    const b = new ScramClientSession({ password: 'x' }).clientFirst();
    expect(a).toMatch(/^n,,n=,r=[A-Za-z0-9+/]{24}$/);
    expect(a).not.toBe(b);
    const sa = server(pencil).clientFirst('n,,n=,r=abc');
    const sb = server(pencil).clientFirst('n,,n=,r=abc');
    expect(sa).toMatch(/^r=abc[A-Za-z0-9+/]{24},/);
    expect(sa).not.toBe(sb);
  });
});

it('SHA-256 and HMAC helpers agree with node:crypto on the RFC keys', () => {
  // StoredKey = H(ClientKey), independently computed.
  const salted = pbkdf2Sync('pencil', RFC.salt, 4096, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  expect(pencil.storedKey).toEqual(createHash('sha256').update(clientKey).digest());
  expect(pencil.serverKey).toEqual(createHmac('sha256', salted).update('Server Key').digest());
});
