import { describe, expect, it } from 'vitest';
import { parseErrorFields, query } from '../src/protocol/messages.ts';
import { clientSettings } from '../src/session/startup-params.ts';
import { startPgmux, trustSettings } from './helpers/pgmux.ts';
import { RawClient } from './helpers/clients.ts';

/** The value of the first column of the first row `sql` returns on `c`. */
async function value(c: RawClient, sql: string): Promise<string> {
  c.messages.length = 0;
  c.write(query(sql));
  await c.until((m) => m.type === 'Z');
  const err = c.messages.find((m) => m.type === 'E');
  if (err !== undefined) throw new Error(parseErrorFields(err.body).get('M'));
  const row = c.messages.find((m) => m.type === 'D')!.body;
  return row.subarray(6, 6 + row.readInt32BE(2)).toString('utf8');
}

describe('ignore_startup_parameters', () => {
  it('clientSettings drops the listed parameters, given directly or in options; options itself drops the words it would refuse', () => {
    const params = new Map([
      ['user', 'app'],
      ['extra_float_digits', '2'],
      ['application_name', 'x'],
      ['options', '-c search_path=s -c Statement_Timeout=5 --work-mem=1MB'],
    ]);
    expect([...clientSettings(params, new Set(['extra_float_digits', 'statement_timeout'])).settings]).toEqual([
      ['application_name', 'x'],
      ['search_path', 's'],
      ['work_mem', '1MB'],
    ]);
    const odd = new Map([['options', '-c a=1 -x -c']]);
    expect(() => clientSettings(odd)).toThrow(/invalid command-line argument for server process: -x/);
    expect([...clientSettings(odd, new Set(['options'])).settings]).toEqual([['a', '1']]);
  });

  for (const pool_mode of ['session', 'transaction'] as const) {
    it(`${pool_mode} mode: without it, PostgreSQL refuses a parameter it does not know; listed, the parameter never reaches the server`, async () => {
      const plain = await startPgmux({ ...trustSettings(), pool_mode });
      try {
        await expect(RawClient.login(plain.port, 'app', 'appdb', [['no_such_setting', '1']])).rejects.toThrow(/unrecognized configuration parameter "no_such_setting"/);
        await expect(RawClient.login(plain.port, 'app', 'appdb', [['options', '-c no_such_setting=1']])).rejects.toThrow(/unrecognized configuration parameter "no_such_setting"/);
      } finally {
        await plain.stop();
      }
      const pgmux = await startPgmux({ ...trustSettings(), pool_mode, ignore_startup_parameters: 'no_such_setting, extra_float_digits' });
      try {
        const c = await RawClient.login(pgmux.port, 'app', 'appdb', [
          ['no_such_setting', '1'],
          ['extra_float_digits', '3'],
          ['options', '-c no_such_setting=2 -c lock_timeout=4s'],
        ]);
        try {
          // PostgreSQL 15's default, not the client's 3; the other settings still apply.
          expect(await value(c, 'SHOW extra_float_digits')).toBe('1');
          expect(await value(c, 'SHOW lock_timeout')).toBe('4s');
        } finally {
          c.close();
        }
      } finally {
        await pgmux.stop();
      }
    });
  }
});
