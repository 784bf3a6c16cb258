/**
 * A minimal protobuf wire codec, enough for the ZDS messages (proto/zds.proto):
 * varints and length-delimited fields, with every other wire type skipped
 * when the field is unknown. Decoding never throws; malformed input (a
 * truncated or over-long varint, a length past the end, a group or reserved
 * wire type, field number 0) is returned as a value, because the bytes come
 * from another process.
 */

export type WireResult<T> = { ok: true; value: T } | { ok: false; reason: string };

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** One field as it appears on the wire. `value` is the varint for type 0, else the raw bytes. */
export type WireField =
  | { readonly field: number; readonly wireType: typeof WIRE_VARINT; readonly value: bigint }
  | { readonly field: number; readonly wireType: typeof WIRE_LEN | typeof WIRE_I64 | typeof WIRE_I32; readonly value: Buffer };

const MAX_VARINT_BYTES = 10;
const MAX_TAG = 0xffffffffn;

interface VarintRead {
  readonly value: bigint;
  readonly next: number;
}

/** Reads an unsigned varint (at most 10 bytes, at most 64 bits) at `pos`. */
export function readVarint(buf: Uint8Array, pos: number): WireResult<VarintRead> {
  let result = 0n;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    const b = buf[pos + i];
    if (b === undefined) return { ok: false, reason: `truncated varint at offset ${pos}` };
    if (i === MAX_VARINT_BYTES - 1 && b > 1) return { ok: false, reason: `varint at offset ${pos} overflows 64 bits` };
    result |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) return { ok: true, value: { value: result, next: pos + i + 1 } };
  }
  return { ok: false, reason: `varint at offset ${pos} is longer than ${MAX_VARINT_BYTES} bytes` };
}

/** Splits a message into its fields, in wire order. Unknown fields are the caller's to ignore. */
export function readFields(buf: Uint8Array): WireResult<WireField[]> {
  const fields: WireField[] = [];
  const bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  while (pos < bytes.length) {
    const tagRead = readVarint(bytes, pos);
    if (!tagRead.ok) return tagRead;
    const tag = tagRead.value.value;
    if (tag > MAX_TAG) return { ok: false, reason: `tag at offset ${pos} is out of range` };
    const field = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    if (field === 0) return { ok: false, reason: `field number 0 at offset ${pos}` };
    pos = tagRead.value.next;
    switch (wireType) {
      case WIRE_VARINT: {
        const v = readVarint(bytes, pos);
        if (!v.ok) return v;
        fields.push({ field, wireType, value: v.value.value });
        pos = v.value.next;
        break;
      }
      case WIRE_I64:
      case WIRE_I32: {
        const size = wireType === WIRE_I64 ? 8 : 4;
        if (pos + size > bytes.length) return { ok: false, reason: `field ${field} needs ${size} bytes past the end of the message` };
        fields.push({ field, wireType, value: bytes.subarray(pos, pos + size) });
        pos += size;
        break;
      }
      case WIRE_LEN: {
        const len = readVarint(bytes, pos);
        if (!len.ok) return len;
        const remaining = bytes.length - len.value.next;
        if (len.value.value > BigInt(remaining)) return { ok: false, reason: `field ${field} length ${len.value.value} runs past the end of the message` };
        const start = len.value.next;
        const end = start + Number(len.value.value);
        fields.push({ field, wireType, value: bytes.subarray(start, end) });
        pos = end;
        break;
      }
      default:
        return { ok: false, reason: `field ${field} has unsupported wire type ${wireType}` };
    }
  }
  return { ok: true, value: fields };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a proto3 `string`; invalid UTF-8 is an error, as in prost and protobuf-go. */
export function decodeUtf8(bytes: Uint8Array, what: string): WireResult<string> {
  try {
    return { ok: true, value: utf8.decode(bytes) };
  } catch {
    return { ok: false, reason: `${what} is not valid utf-8` };
  }
}

/** Builds one message. Fields are written in call order. */
export class WireWriter {
  private readonly parts: Buffer[] = [];

  /** A varint of up to 64 bits; negative values are written as their two's complement (10 bytes). */
  varint(value: bigint | number): this {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.parts.push(Buffer.from(out));
    return this;
  }

  tag(field: number, wireType: number): this {
    return this.varint((BigInt(field) << 3n) | BigInt(wireType));
  }

  /** A varint field; proto3 leaves zero off the wire unless `always`. */
  uint(field: number, value: bigint | number, always = false): this {
    if (!always && BigInt(value) === 0n) return this;
    return this.tag(field, WIRE_VARINT).varint(value);
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN).varint(value.length);
    this.parts.push(Buffer.from(value));
    return this;
  }

  /** A string field; proto3 leaves the empty string off the wire. */
  string(field: number, value: string): this {
    if (value.length === 0) return this;
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** An embedded message field, written even when empty (presence matters for messages and oneofs). */
  message(field: number, encoded: Uint8Array): this {
    return this.bytes(field, encoded);
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}
