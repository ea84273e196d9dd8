/**
 * Redis Cluster key slots computed client-side (CRC16-CCITT/XMODEM mod 16384, hashing only the
 * first non-empty `{tag}`), binary-safe. The same algorithm as the `cluster-key-slot` package
 * ioredis uses; kept here (20 lines) rather than depending on a transitive package.
 */

export const SLOTS = 16384;

const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let j = 0; j < 8; j++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    t[i] = crc;
  }
  return t;
})();

export function crc16(data: Buffer): number {
  let crc = 0;
  for (const b of data) crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ b) & 0xff] as number);
  return crc;
}

/** The part of a key Redis hashes: the first non-empty `{...}`, else the whole key. */
export function hashPart(key: Buffer): Buffer {
  const open = key.indexOf(0x7b);
  if (open < 0) return key;
  const close = key.indexOf(0x7d, open + 1);
  if (close <= open + 1) return key;
  return key.subarray(open + 1, close);
}

export function keySlot(key: Buffer | string): number {
  return crc16(hashPart(typeof key === 'string' ? Buffer.from(key, 'utf8') : key)) % SLOTS;
}
