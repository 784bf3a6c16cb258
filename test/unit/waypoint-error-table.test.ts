/** The single error → response table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_TABLE, httpToGrpcStatus, localReply } from '../../src/waypoint/error-table.js';

test('each local outcome maps to the Istio/Envoy status and response flag', () => {
  const want: Record<string, [number, string]> = {
    authn_failed: [401, 'UAEX'], authz_denied: [403, 'RBAC'], no_route: [404, 'NR'], overflow: [503, 'UO'], no_healthy_upstream: [503, 'UH'],
    connect_failure: [503, 'UF'], upstream_reset: [502, 'UR'], timeout: [504, 'UT'], per_try_timeout: [504, 'UT'],
  };
  for (const [outcome, [status, flag]] of Object.entries(want)) {
    const r = localReply(outcome as keyof typeof ERROR_TABLE);
    assert.deepEqual([r.status, r.flag], [status, flag], outcome);
  }
  assert.ok(Object.isFrozen(ERROR_TABLE));
  assert.equal(localReply('authz_denied').grpcStatus, 7);
  assert.equal(localReply('authn_failed').grpcStatus, 16);
  assert.equal(localReply('overflow').grpcStatus, 14);
  assert.equal(localReply('timeout').grpcStatus, 4);
});

test('HTTP status to gRPC status (gRPC HTTP mapping)', () => {
  assert.deepEqual([400, 401, 403, 404, 429, 502, 503, 504, 500].map(httpToGrpcStatus), [13, 16, 7, 12, 14, 14, 14, 14, 2]);
});
