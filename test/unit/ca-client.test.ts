import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { IstioCaClient } from '../../src/ca/ca-client.js';
import { spiffeId } from '../../src/identity/spiffe.js';

const ID = spiffeId('cluster.local', 'default', 'web');

// The token is asked for before any connection is made, so these never touch the network.
void describe('IstioCaClient token handling', () => {
  for (const [name, provider, re] of [
    ['a throwing provider', () => Promise.reject(new Error('ENOENT: /var/run/secrets/tokens/istio-token')), /cannot get a token to ask the ca at ca\.invalid:15012 for spiffe:\/\/cluster.local\/ns\/default\/sa\/web: ENOENT/],
    ['an empty token', () => '  \n', /the token for the ca at ca\.invalid:15012 is empty/],
    ['a multi-line token', () => 'a\nb', /contains a line break/],
  ] as const) {
    void it(`refuses ${name} with AMBIT_ERR_CA_TOKEN`, async () => {
      const c = new IstioCaClient({ address: 'ca.invalid:15012', credentials: grpc.credentials.createInsecure(), tokenProvider: provider });
      try {
        await assert.rejects(c.sign({ csrPem: 'x', identity: ID, ttlSeconds: 60 }), { code: 'AMBIT_ERR_CA_TOKEN', message: re });
      } finally {
        c.close();
      }
    });
  }
});
