/**
 * Protocol sniffing for 'http' services: HTTP/1.x (a request line), the h2
 * prior-knowledge preface, or anything else (opaque TCP passthrough, as
 * Envoy's http_inspector + tcp_proxy fallback in a waypoint). Decides as soon
 * as the bytes allow, so binary protocols are not held waiting for a CRLF.
 */
export type Sniffed = 'h1' | 'h2' | 'tcp' | 'more';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** A request line longer than this is not treated as HTTP. */
export const MAX_SNIFF_BYTES = 8192;
const REQUEST_LINE = /^[A-Z][A-Z-]{0,19} [^ \r\n]+ HTTP\/1\.[01]$/;

export function sniff(buf: Buffer): Sniffed {
  if (buf.length === 0) return 'more';
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return buf.length >= H2_PREFACE.length ? 'h2' : 'more';
  const s = buf.toString('latin1', 0, Math.min(buf.length, MAX_SNIFF_BYTES));
  const eol = s.indexOf('\r\n');
  if (eol >= 0) return REQUEST_LINE.test(s.slice(0, eol)) ? 'h1' : 'tcp';
  if (buf.length >= MAX_SNIFF_BYTES) return 'tcp';
  // still incomplete: give up early when it cannot become a request line
  const sp = s.indexOf(' ');
  if (sp < 0) return /^[A-Z]{0,20}$/.test(s) ? 'more' : 'tcp';
  if (!/^[A-Z][A-Z-]{0,19}$/.test(s.slice(0, sp))) return 'tcp';
  if (/\n|\r./.test(s.slice(sp + 1))) return 'tcp';
  return 'more';
}
