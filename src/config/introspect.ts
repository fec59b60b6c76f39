/**
 * Reads the config schema itself, so flags, environment variables, --help
 * and error hints follow it instead of repeating its keys.
 */
import type { z } from 'zod';
import { ConfigSchema, settingInfo, type Config } from './schema.ts';

/** The parts of a zod definition this module looks at. */
interface DefView {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  valueType?: z.ZodType;
  element?: z.ZodType;
  entries?: Record<string, string>;
  format?: string;
}

function defOf(schema: z.ZodType): DefView {
  return schema.def as unknown as DefView;
}

/** The schema under defaults, optionals and pipes. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    const def = defOf(s);
    const next = def.type === 'pipe' ? def.in : def.innerType;
    if (next === undefined || !['default', 'optional', 'nullable', 'prefault', 'pipe'].includes(def.type)) return s;
    s = next;
  }
}

/** The schema of the value at `path`, unwrapped; undefined for paths the schema does not have. */
function schemaAt(path: readonly PropertyKey[]): z.ZodType | undefined {
  let s: z.ZodType | undefined = ConfigSchema;
  for (const seg of path) {
    if (s === undefined) return undefined;
    const def = defOf(unwrap(s));
    if (def.type === 'object') s = def.shape?.[String(seg)];
    else if (def.type === 'record') s = def.valueType;
    else if (def.type === 'array') s = def.element;
    else return undefined;
  }
  return s === undefined ? undefined : unwrap(s);
}

/** The keys a table at `path` may have (empty when it is not a table). */
export function keysAt(path: readonly PropertyKey[]): string[] {
  const s = schemaAt(path);
  const shape = s === undefined ? undefined : defOf(s).shape;
  return s !== undefined && defOf(s).type === 'object' && shape !== undefined ? Object.keys(shape) : [];
}

/** Whether the value at `path` must be a whole number. */
export function isIntegerAt(path: readonly PropertyKey[]): boolean {
  const s = schemaAt(path);
  return s !== undefined && isInteger(defOf(s));
}

function isInteger(def: DefView): boolean {
  return def.type === 'number' && def.format !== undefined && def.format.includes('int');
}

export type SettingKind = 'string' | 'number' | 'integer' | 'boolean';

/** A top-level setting that takes one value: what flags and PGMUX_* variables can set. */
export interface ScalarSetting {
  key: keyof Config & string;
  kind: SettingKind;
  /** Accepted values, for enums. */
  choices?: readonly string[];
  /** Absent for settings that are unset by default. */
  default?: unknown;
  description: string;
  /** Name of the value in --help (`--listen <host:port>`). */
  arg: string;
}

let scalarCache: ScalarSetting[] | undefined;

/** Every scalar top-level setting, in schema order. */
export function scalarSettings(): ScalarSetting[] {
  if (scalarCache !== undefined) return scalarCache;
  const defaults: Record<string, unknown> = ConfigSchema.parse({});
  const out: ScalarSetting[] = [];
  for (const [key, field] of Object.entries(ConfigSchema.shape) as [keyof Config & string, z.ZodType][]) {
    let def = defOf(unwrap(field));
    // n | auto (workers): set as its first choice, a number, or the word.
    if (def.type === 'union') def = defOf(unwrap((def as DefView & { options: z.ZodType[] }).options[0]));
    let kind: SettingKind;
    if (def.type === 'string' || def.type === 'enum') kind = 'string';
    else if (def.type === 'number') kind = isInteger(def) ? 'integer' : 'number';
    else if (def.type === 'boolean') kind = 'boolean';
    else continue;
    const info = settingInfo.get(field);
    out.push({
      key,
      kind,
      choices: def.type === 'enum' && def.entries !== undefined ? Object.values(def.entries) : undefined,
      default: defaults[key],
      description: info?.description ?? key,
      arg: info?.arg ?? 'value',
    });
  }
  scalarCache = out;
  return out;
}

/** What --help says about a table-valued setting such as `endpoints`. */
export function describeSetting(key: keyof Config & string): string {
  return settingInfo.get(ConfigSchema.shape[key])?.description ?? key;
}
