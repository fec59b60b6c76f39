/**
 * SASLprep of a password as PostgreSQL's pg_saslprep computes it, or null
 * where PostgreSQL reports failure (and then uses the raw password).
 * PostgreSQL's own choices, kept here so our verifiers match its:
 *  - a pure ASCII string is returned untouched, control characters included;
 *  - a string that maps to nothing is refused;
 *  - the prohibited, unassigned and bidi checks look at the mapped input,
 *    before NFKC normalization, not at the normalized output.
 * A lone surrogate cannot be UTF-8 encoded, PostgreSQL's "invalid UTF-8".
 */
export function saslPrep(s: string): string | null {
  if (/^[\x00-\x7f]*$/.test(s)) return s;
  const mapped: number[] = [];
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0xd800 && cp <= 0xdfff) return null;
    if (inTable(NON_ASCII_SPACE, cp)) mapped.push(0x20);
    else if (!inTable(MAPPED_TO_NOTHING, cp)) mapped.push(cp);
  }
  if (mapped.length === 0) return null;
  for (const cp of mapped) {
    if (inTable(PROHIBITED, cp) || inTable(UNASSIGNED, cp)) return null;
  }
  // RFC 3454 section 6: right-to-left text must not mix with left-to-right
  // letters, and must begin and end with a right-to-left character.
  if (mapped.some((cp) => inTable(RAND_AL_CAT, cp))) {
    if (mapped.some((cp) => inTable(L_CAT, cp))) return null;
    if (!inTable(RAND_AL_CAT, mapped[0]!) || !inTable(RAND_AL_CAT, mapped[mapped.length - 1]!)) return null;
  }
  return mapped.map((cp) => String.fromCodePoint(cp)).join('').normalize('NFKC');
}

/** Binary search in a flat [first, last, first, last, ...] list of sorted inclusive ranges. */
function inTable(table: Uint32Array, cp: number): boolean {
  let lo = 0;
  let hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < table[2 * mid]!) hi = mid - 1;
    else if (cp > table[2 * mid + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * Decodes a compact range list: base-36 numbers in pairs (gap since the end
 * of the previous range + 1, then last - first).
 */
function ranges(encoded: string): Uint32Array {
  const nums = encoded.trim().split(/\s+/).map((n) => parseInt(n, 36));
  const out = new Uint32Array(nums.length);
  let next = 0;
  for (let i = 0; i < nums.length; i += 2) {
    const first = next + nums[i]!;
    const last = first + nums[i + 1]!;
    out[i] = first;
    out[i + 1] = last;
    next = last + 1;
  }
  return out;
}

/*
 * The stringprep tables of RFC 3454 (all Unicode 3.2, as the RFC fixes them),
 * generated from Python's `stringprep` module, which implements the same
 * tables from the Unicode 3.2 database:
 *   NON_ASCII_SPACE    C.1.2, mapped to U+0020
 *   MAPPED_TO_NOTHING  B.1
 *   PROHIBITED         C.1.2, C.2.1, C.2.2, C.3 - C.9 (SASLprep's prohibited output)
 *   UNASSIGNED         A.1
 *   RAND_AL_CAT        D.1 (bidi R and AL)
 *   L_CAT              D.2 (bidi L)
 */
const NON_ASCII_SPACE = ranges('4g 0 4bj 0 1vj b z 0 1b 0 334 0');
const MAPPED_TO_NOTHING = ranges('4t 0 ip 0 43a 0 4 2 1kt 2 2a 0 17rz f 6n 0');
const PROHIBITED = ranges(`
  0 v 2n x in 1 pn 0 1d 0 31s 0 b1 0 1kh f o 7 1b 4 6 5 328 b 4 0 x6n 6in y8 v 7j 0 6x 6 15df 7 96r 1
  1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1eke 1 1 0 u 2n 1egu
  2t4x
`);
const UNASSIGNED = ranges(`
  f5 0 i r 2m 1 1r g 28 f g 3 2 3 1 2 1 4 7 0 1 0 k 0 18 0 13 8 3r 0 1z 0 12 1 2 5 g w 12 1 7 0 13 0 2
  5 h 0 n 0 a a r 4 5 m 1 d 1 2 1 0 q 4 m 9 3y 1 f 0 e 0 u 2 r 1g 1e 9a 3 0 1h 1 i 1 5 2 p f 3 0 8 1 2
  1 m 0 7 0 1 2 4 1 1 0 7 1 2 1 3 8 1 3 2 0 5 1 l 6 1 1 6 3 2 1 m 0 7 0 2 0 2 0 2 1 1 0 5 3 2 1 3 a 4
  0 1 6 f b 3 0 7 0 1 0 3 0 m 0 7 0 2 0 5 1 a 0 3 0 3 1 1 e 1 4 a g 3 0 8 1 2 1 m 0 7 0 2 1 4 1 8 2 2
  1 3 7 2 3 2 0 3 3 b g 2 0 6 2 3 0 4 2 2 0 1 0 2 2 2 2 3 2 8 0 3 3 5 2 3 0 4 8 1 e c d 3 0 8 0 3 0 n
  0 a 0 5 3 7 0 3 0 4 6 2 8 2 3 a h 2 0 8 0 3 0 n 0 a 0 5 3 7 0 3 0 4 6 2 6 1 0 2 3 a h 2 0 8 0 3 0 n
  0 g 3 6 1 3 0 4 8 1 7 2 3 a h 2 0 i 2 o 0 9 0 1 1 7 2 1 3 6 0 1 0 8 h 3 b 1m 3 t 10 2 0 1 1 2 0 1 1
  1 5 4 0 7 0 3 0 1 0 1 1 2 0 d 0 3 1 5 0 1 0 6 1 a 1 2 x 20 0 y 5 r 3 8 0 10 0 f 1 1 1b y 0 5 0 2 0 7
  2 4 5 q 1x 12 9 15 1 1 3 2i 4 1w 4 2a 5 7 0 1r 0 1 0 4 1 7 0 1 0 4 1 13 0 1 0 4 1 v 0 1 0 4 1 7 0 1
  0 4 1 7 0 7 0 n 0 v 0 1 0 4 1 7 0 13 0 j 5 s y 2d b hi 8 t 2 29 e d 0 7 a n 8 k b d 0 3 0 2 b 2l 2 a
  l f 0 a 5 2g 7 16 11x 4c 3 2i 5 m 1 6 1 12 1 6 1 8 0 1 0 1 0 1 0 v 1 1h 0 f 0 e 1 6 0 j 1 3 0 9 0 2b
  3 1 6 5 5 8 1 r g i t r k 1n 1 f 6 1d b fz 1c 13 o b k 4f 0 7o 1 2 0 2t 1 a 3a 4 0 4 1 s 0 z 0 1 0 4
  2 1 0 7 1 1g 2 o 0 e g s 3 ls ov q 0 2h b 5y p c 3 1s 0 2e 1 2v 4 14 3 2m 0 14 1j 19 2 10 c 17 2 25
  3 1b 0 3b 3 2r 1 v 0 52u 21 g4m 2h wd 2 1j 1fc 8mc 2j 6r2 1 1n 44 7 b 5 4 q 0 5 0 1 0 2 0 2 0 30 w
  a5 f 1s 1 1i 7 19 2 g f 4 b n 1 a 0 j 0 4 3 5 0 3r 1 1 0 5a 2 6 1 6 1 6 1 3 2 7 0 7 9 7 lb v 0 4 b r
  50 12 1 12 148h 6u 9 13 2 50 f5 2d 0 1z 0 2 1 1 1 2 1 4 0 c 0 1 0 4 0 2 0 1t 0 4 1 8 0 7 0 s 0 4 0 5
  0 1 2 7 0 9e 3 82 3 1e 7wd wyh g14 f2 15r 2 1ekd 2 1ekd 2 1ekd 2 1ekd 2 1ekd 2 1ekd 2 1ekd 2 1ekd 2
  1ekd 2 1ekd 2 1ekd 2 0 1 t 2o 1egt
`);
const RAND_AL_CAT = ranges(`
  14u 0 1 0 2 0 c q 5 4 12 0 3 0 1 p 5 a y 2 1 2s 7 0 7 1 j 4 1 d 2 0 1 q 2b 11 b 0 4t9 0 179p 0 1 9 1
  c 1 4 1 0 1 1 1 1 1 2z x a2 i 1r 2 1h 14 c 37 4 1 3q
`);
const L_CAT = ranges(`
  1t p 6 p 1b 0 a 0 4 0 5 m 1 u 1 88 1 h s 2l 2 8 2 6 e 1 e 4 9 0 3v 0 b 0 1 2 1 0 1 j 1 17 1 11 a 3m
  7 1w 1 11 2 1 6 f x 11 2 6 1 12 1 0 op 0 1 1g 3 3 8 3 3 0 7 9 2 c h 1 1 7 2 1 2 l 1 6 1 0 3 3 4 2 6
  1 2 1 a 0 4 1 1 2 4 b 2 6 a 5 4 1 2 l 1 6 1 1 1 1 1 1 4 2 o 3 1 0 7 9 2 2 e 0 1 6 1 0 1 2 1 l 1 6 1
  1 1 4 3 3 8 0 1 1 3 0 f 0 5 9 i 1 1 7 2 1 2 l 1 6 1 1 2 3 3 1 1 0 6 1 2 1 a 0 4 1 1 2 4 a i 0 1 5 3
  2 1 3 3 1 1 0 1 1 3 1 3 2 3 7 1 2 4 1 1 1 3 2 1 2 a 0 f b e 2 1 7 1 2 1 m 1 9 1 4 7 3 r 1 4 9 i 1 1
  7 1 2 1 m 1 9 1 4 4 0 1 4 2 1 1 1 9 1 7 0 1 1 4 9 i 1 1 7 1 2 1 m 1 f 4 2 5 2 1 2 a 0 8 1 4 9 i 1 1
  h 3 n 1 8 1 0 2 6 8 2 6 7 i 2 c 1b 1 1 c 6 8 c 11 1 1 0 2 1 1 0 2 0 6 3 1 6 1 2 1 0 1 0 2 1 1 3 1 1
  9 0 2 4 1 0 9 9 2 1 y n 2 q 1 0 1 0 5 9 1 x k 0 5 0 2 3 1e 7 1 5 2 0 1c x 1 4 1 1 1 0 4 0 6 0 7 n 20
  11 a 14 2 0 4 2h 5 1v 5 29 6 6 1 1q 1 0 1 3 2 6 1 0 1 3 2 12 1 0 1 3 2 u 1 0 1 3 2 6 1 0 1 3 2 6 1 6
  1 m 1 u 1 0 1 3 2 6 1 12 1 i 6 r z 2c c hh a p 5 28 f c 1 3 e h 3 1 9 h e c 1 2 f 1i 7 7 1 1 b 6 1 0
  3 9 12 9 6 2f 8 14 11z 4b 4 2h 6 l 2 5 2 11 2 5 2 7 1 0 1 0 1 0 1 u 2 1g 1 6 1 0 3 2 1 6 3 3 2 5 4 c
  5 2 1 6 h 0 2q 0 d 0 3m 0 4 0 2 9 1 0 3 4 6 0 1 0 1 0 1 3 1 2 1 6 3 2 5 4 m z c2 1w q 0 7a 25 26z 2
  p 8 7 4 2 4 4 2d 6 2 1 2h 1 3 5 13 4 2l 1 13 1k 18 3 z s r 3 1d f b 4 1a 1 3a 4 2q 2 u 1 52t 22 g4l
  2i wc 1gz 8mb 2k 6r1 2 1m 45 6 c 4 sp p 6 p b 2g 3 5 2 5 2 5 2 2 mb u 1 3 c q 51 11 2 11 148i 6t a
  12 3 1o 3 8 g 1 7 t 4 1b f6 2c 1 1y 1 1 2 0 2 1 2 3 1 b 1 0 1 3 1 1 1 1s 1 3 2 7 1 6 1 r 1 3 1 4 1 0
  3 6 1 9d 4 81 7xy wye g15 f1 gvz6 1ekd 2 1ekd
`);
