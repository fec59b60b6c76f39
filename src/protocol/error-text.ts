/**
 * An ErrorResponse or NoticeResponse body with `from` replaced by `to` in
 * its message, detail and hint, as a whole message (header included); null
 * when the text does not hold `from`. pgmux names a client's prepared
 * statements otherwise on the server; the client reads its own names.
 */
export function renameInError(type: number, body: Buffer, from: string, to: string): Buffer | null {
  if (body.indexOf(from) < 0) return null;
  const parts: Buffer[] = [];
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = body[i];
    const end = body.indexOf(0, i + 1);
    if (end < 0) return null;
    let text = body.toString('utf8', i + 1, end);
    // M: message, D: detail, H: hint.
    if (code === 0x4d || code === 0x44 || code === 0x48) text = text.split(from).join(to);
    parts.push(Buffer.from([code]), Buffer.from(text + '\0', 'utf8'));
    i = end + 1;
  }
  parts.push(Buffer.from([0]));
  const fields = Buffer.concat(parts);
  const out = Buffer.allocUnsafe(5 + fields.length);
  out[0] = type;
  out.writeInt32BE(4 + fields.length, 1);
  fields.copy(out, 5);
  return out;
}
