import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import {
  caProtoPath,
  caServiceDefinition,
  CREATE_CERTIFICATE_PATH,
  decodeCertificateRequest,
  decodeCertificateResponse,
  encodeCertificateRequest,
  encodeCertificateResponse,
} from '../../src/ca/ca-proto.js';

void describe('ca.proto', () => {
  void it('declares the Istio names and field numbers', () => {
    const root = protobuf.loadSync(caProtoPath());
    const req = root.lookupType('istio.v1.auth.IstioCertificateRequest');
    assert.equal(req.fields.csr?.id, 1);
    assert.equal(req.fields.csr?.type, 'string');
    assert.equal(req.fields.validityDuration?.id, 3);
    assert.equal(req.fields.validityDuration?.type, 'int64');
    assert.equal(req.fields.metadata?.id, 4);
    assert.equal(req.fields.metadata?.type, 'google.protobuf.Struct');
    assert.equal(Object.keys(req.fields).length, 3, 'field 2 is not declared');
    const res = root.lookupType('istio.v1.auth.IstioCertificateResponse');
    assert.equal(res.fields.certChain?.id, 1);
    assert.equal(res.fields.certChain?.repeated, true);
    const svc = root.lookupService('istio.v1.auth.IstioCertificateService');
    assert.deepEqual(Object.keys(svc.methods), ['CreateCertificate']);
    assert.equal(CREATE_CERTIFICATE_PATH, '/istio.v1.auth.IstioCertificateService/CreateCertificate');
    assert.equal(caServiceDefinition().CreateCertificate?.path, CREATE_CERTIFICATE_PATH);
  });

  void it('round-trips a request with Struct metadata, and matches hand-built wire bytes', () => {
    const buf = encodeCertificateRequest({ csr: 'x', validityDuration: 86400, metadata: { ImpersonatedIdentity: 'spiffe://a/ns/b/sa/c', n: 1, nested: { ok: true, l: [null, 'y'] } } });
    const d = decodeCertificateRequest(buf);
    assert.ok(!('undecodable' in d));
    assert.equal(d.csr, 'x');
    assert.equal(d.validityDuration, 86400);
    assert.deepEqual(JSON.parse(JSON.stringify(d.metadata)), { ImpersonatedIdentity: 'spiffe://a/ns/b/sa/c', n: 1, nested: { ok: true, l: [null, 'y'] } });
    // field 1 (len) "x", field 3 (varint) 86400 = 0x80 0xa3 0x05
    assert.deepEqual([...buf.subarray(0, 7)], [0x0a, 0x01, 0x78, 0x18, 0x80, 0xa3, 0x05]);
  });

  void it('decodes an empty request to defaults and garbage to a value, never throwing', () => {
    const empty = decodeCertificateRequest(Buffer.alloc(0));
    assert.ok(!('undecodable' in empty));
    assert.equal(empty.csr, '');
    assert.equal(empty.validityDuration, 0);
    assert.deepEqual({ ...empty.metadata }, {});
    const bad = decodeCertificateRequest(Buffer.from([0x0a, 0x50, 0x01]));
    assert.ok('undecodable' in bad);
    const neg = decodeCertificateRequest(Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
    assert.ok(!('undecodable' in neg));
    assert.equal(neg.validityDuration, -1);
  });

  void it('round-trips a response', () => {
    assert.deepEqual(decodeCertificateResponse(encodeCertificateResponse({ certChain: ['a', 'b', 'c'] })).certChain, ['a', 'b', 'c']);
  });
});
