import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { bearerToken } from '../../src/ca/authenticator.js';
import { NodeTokenAuthenticator, parseNodeTokens } from '../../src/ca/node-token-authenticator.js';
import { FakeClock } from '../../src/common/clock.js';

const TOKEN_A = 'aaaaaaaaaaaaaaaaaaaaaaaa';
const TOKEN_B = 'bbbbbbbbbbbbbbbbbbbbbbbb';

function md(auth?: string | string[]): Metadata {
  const m = new Metadata();
  for (const a of auth === undefined ? [] : Array.isArray(auth) ? auth : [auth]) m.add('authorization', a);
  return m;
}

void describe('bearerToken', () => {
  void it('accepts exactly one "Bearer <token>" header', () => {
    assert.deepEqual(bearerToken(md(`Bearer ${TOKEN_A}`)), { ok: true, token: TOKEN_A });
    assert.deepEqual(bearerToken(md(`bearer ${TOKEN_A}`)), { ok: true, token: TOKEN_A });
    assert.match((bearerToken(md()) as { reason: string }).reason, /no authorization header/);
    assert.match((bearerToken(md(['Bearer x', 'Bearer y'])) as { reason: string }).reason, /2 authorization headers/);
    assert.match((bearerToken(md(`Basic ${TOKEN_A}`)) as { reason: string }).reason, /not "Bearer <token>"/);
    assert.match((bearerToken(md('Bearer a b')) as { reason: string }).reason, /not "Bearer <token>"/);
    assert.match((bearerToken(md(`Bearer ${'x'.repeat(20_000)}`)) as { reason: string }).reason, /longer than/);
  });
});

void describe('parseNodeTokens', () => {
  void it('reads "<token> <node>" lines, skipping comments and blanks', () => {
    const t = parseNodeTokens(`# lab tokens\n\n${TOKEN_A} node-a\n  ${TOKEN_B}\tnode-b  \n`, 'f');
    assert.equal(t.size, 2);
    assert.deepEqual(
      [...t.values()].map((e) => e.node),
      ['node-a', 'node-b'],
    );
    assert.ok(![...t.keys()].includes(TOKEN_A), 'tokens are stored as digests');
  });

  void it('names the bad line', () => {
    assert.throws(() => parseNodeTokens(`${TOKEN_A}\n`, 'f'), { code: 'AMBIT_ERR_CA_TOKEN_FILE', message: /f line 1 has 1 fields/ });
    assert.throws(() => parseNodeTokens(`\nshort node-a\n`, 'f'), { message: /f line 2: the token must be at least 16/ });
    assert.throws(() => parseNodeTokens(`${TOKEN_A} node/a\n`, 'f'), { message: /not a valid node name/ });
    assert.throws(() => parseNodeTokens(`${TOKEN_A} a\n${TOKEN_A} b\n`, 'f'), { message: /f line 2: the token is already listed/ });
  });
});

void describe('NodeTokenAuthenticator', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ambit-ca-tokens-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('maps a known token to its node and refuses others', async () => {
    const a = NodeTokenAuthenticator.fromEntries([[TOKEN_A, 'node-a']]);
    const ok = await a.authenticate({ metadata: md(`Bearer ${TOKEN_A}`), peer: 'p' });
    assert.deepEqual(ok, { ok: true, caller: { node: 'node-a', method: 'node-token', subject: 'entry 1' } });
    const no = await a.authenticate({ metadata: md(`Bearer ${TOKEN_B}`), peer: 'p' });
    assert.equal(no.ok, false);
    assert.equal(!no.ok && no.kind, 'unauthenticated');
    assert.equal((await a.authenticate({ metadata: md(), peer: 'p' })).ok, false);
  });

  void it('reloads a changed file, keeps the old table for a broken file, and fails closed when it is removed', async () => {
    const file = join(dir, 'tokens');
    await writeFile(file, `${TOKEN_A} node-a\n`);
    const clock = new FakeClock(1_000);
    const a = await NodeTokenAuthenticator.fromFile({ file, clock, reloadCheckMs: 1000 });
    const auth = (t: string) => a.authenticate({ metadata: md(`Bearer ${t}`), peer: 'p' });
    assert.equal((await auth(TOKEN_A)).ok, true);
    assert.equal((await auth(TOKEN_B)).ok, false);

    await writeFile(file, `${TOKEN_B} node-b\n# a was revoked\n`);
    assert.equal((await auth(TOKEN_B)).ok, false, 'no check before reloadCheckMs has passed');
    clock.advance(1000);
    const b = await auth(TOKEN_B);
    assert.ok(b.ok && b.caller.node === 'node-b');
    assert.equal((await auth(TOKEN_A)).ok, false, 'the removed token is refused');

    await writeFile(file, `this line is broken\n`);
    await a.reload();
    assert.equal((await auth(TOKEN_B)).ok, true, 'a broken file keeps the previous tokens');

    await unlink(file);
    await a.reload();
    assert.equal(a.size, 0);
    const gone = await auth(TOKEN_B);
    assert.equal(gone.ok, false, 'a removed file refuses everything');

    await writeFile(file, `${TOKEN_A} node-a\n`);
    await a.reload();
    assert.equal((await auth(TOKEN_A)).ok, true, 'and recovers when it is back');
  });

  void it('refuses to start on a missing or malformed file', async () => {
    await assert.rejects(NodeTokenAuthenticator.fromFile({ file: join(dir, 'nope') }), { code: 'AMBIT_ERR_CA_TOKEN_FILE', message: /cannot read the node token file/ });
    const bad = join(dir, 'bad');
    await writeFile(bad, 'x y z\n');
    await assert.rejects(NodeTokenAuthenticator.fromFile({ file: bad }), { code: 'AMBIT_ERR_CA_TOKEN_FILE', message: /line 1 has 3 fields/ });
  });
});
