/**
 * PostgreSQL's MD5 password scheme. The stored secret is
 * "md5" + md5(password || user); on the wire the client answers a 4-byte
 * salt with "md5" + md5(hex part of the secret || salt), so anyone holding
 * the secret can log in: it is password-equivalent and kept only for old
 * setups.
 */
import { createHash } from 'node:crypto';

function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** The secret PostgreSQL stores for `user` with `password` (password_encryption = md5). */
export function md5Secret(user: string, password: string): string {
  return `md5${md5Hex(Buffer.from(password + user, 'utf8'))}`;
}

/** The PasswordMessage answer to an AuthenticationMD5Password request, from a stored "md5..." secret. */
export function md5Response(secret: string, salt: Buffer): string {
  return `md5${md5Hex(Buffer.concat([Buffer.from(secret.slice(3), 'utf8'), salt]))}`;
}

export function md5ResponseFromPassword(user: string, password: string, salt: Buffer): string {
  return md5Response(md5Secret(user, password), salt);
}
