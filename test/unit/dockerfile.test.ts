/**
 * The Dockerfile, checked statically (no container runtime runs here, so the
 * image is NOT built by any test): a build stage and a runtime stage; every
 * COPY from the context names a file that exists and is not excluded by
 * .dockerignore; every COPY --from=build names something the build stage
 * copied in or produces (dist/ from tsc, the addon named in binding.gyp,
 * node_modules); the runtime has what the code resolves next to dist/ at
 * run time (package.json, proto/, deploy/, the addon); the entrypoint runs
 * bin/ambit.js; the Node major matches package.json engines; it ends as a
 * non-root user.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Instr {
  readonly op: string;
  readonly args: string;
  readonly line: number;
}

interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly instrs: Instr[];
}

/** Instructions (continuations joined, comments dropped) grouped by stage, with ARG defaults substituted in FROM. */
export function parseDockerfile(text: string): { stages: Stage[]; args: Map<string, string> } {
  const instrs: Instr[] = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (buf === '' && (line === '' || line.startsWith('#'))) return;
    if (buf === '') start = i + 1;
    buf += (buf ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (!line.endsWith('\\')) {
      const m = /^(\S+)\s*(.*)$/.exec(buf);
      if (m) instrs.push({ op: (m[1] as string).toUpperCase(), args: m[2] as string, line: start });
      buf = '';
    }
  });
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instrs) {
    if (ins.op === 'ARG' && stages.length === 0) {
      const [k, v] = ins.args.split('=', 2);
      if (k && v !== undefined) args.set(k, v);
      continue;
    }
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert.ok(m, `line ${ins.line}: FROM ${ins.args}`);
      const image = (m[1] as string).replace(/\$\{(\w+)\}|\$(\w+)/g, (_x, a?: string, b?: string) => args.get((a ?? b) as string) ?? '');
      stages.push({ image, name: m[2], instrs: [] });
      continue;
    }
    const cur = stages.at(-1);
    assert.ok(cur, `line ${ins.line}: ${ins.op} before FROM`);
    cur.instrs.push(ins);
  }
  return { stages, args };
}

interface Copy {
  readonly from: string | undefined;
  readonly sources: string[];
  readonly dest: string;
}

function copies(s: Stage): Copy[] {
  return s.instrs
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1) as string };
    });
}

const dockerfile = readFileSync(`${ROOT}Dockerfile`, 'utf8');
const { stages } = parseDockerfile(dockerfile);
const build = stages[0] as Stage;
const runtime = stages.at(-1) as Stage;
const ignored = existsSync(`${ROOT}.dockerignore`)
  ? readFileSync(`${ROOT}.dockerignore`, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
  : [];

describe('Dockerfile (static checks; the image is not built here)', () => {
  test('multi-stage: a named build stage, a runtime stage, both on the same Node image', () => {
    assert.ok(stages.length >= 2, 'at least two stages');
    assert.equal(build.name, 'build');
    assert.equal(build.image, runtime.image, 'the addon is built against the Node it runs on');
    assert.match(runtime.image, /^node:\d+/);
  });

  test("the Node major matches package.json engines", () => {
    const engines = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { engines: { node: string } }).engines.node;
    const wantMajor = /(\d+)/.exec(engines)?.[1];
    for (const s of stages) assert.equal(/^node:(\d+)/.exec(s.image)?.[1], wantMajor, `${s.image} vs engines ${engines}`);
  });

  test('every COPY from the build context exists and is not excluded by .dockerignore', () => {
    for (const s of stages) {
      for (const c of copies(s).filter((x) => x.from === undefined)) {
        for (const src of c.sources) {
          assert.ok(existsSync(`${ROOT}${src}`), `COPY ${src}: no such file in the repository`);
          const top = src.replace(/^\.\//, '').split('/')[0] as string;
          assert.ok(!ignored.includes(top), `COPY ${src} is excluded by .dockerignore`);
        }
      }
    }
  });

  test('the build stage builds the addon and the TypeScript; the runtime takes only their outputs', () => {
    const runs = build.instrs.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    assert.match(runs, /npm ci/);
    assert.match(runs, /node scripts\/build-native\.mjs/);
    assert.match(runs, /tsc -p tsconfig\.json/);
    assert.match(runs, /npm prune --omit=dev/);
    // The addon's file name is binding.gyp's target.
    const target = /'target_name':\s*'([^']+)'/.exec(readFileSync(`${ROOT}binding.gyp`, 'utf8'))?.[1];
    assert.ok(target);
    const gypSources = [...readFileSync(`${ROOT}binding.gyp`, 'utf8').matchAll(/'(native\/[^']+\.cc)'/g)].map((m) => m[1] as string);
    assert.ok(gypSources.length > 0);
    for (const f of gypSources) assert.ok(existsSync(`${ROOT}${f}`), f);
    const inBuild = copies(build).flatMap((c) => c.sources.map((src) => `/src/${src === '.' ? '' : src.replace(/^\.\//, '')}`));
    const produced = ['/src/node_modules', '/src/dist/src', `/src/build/Release/${target}.node`];
    for (const c of copies(runtime).filter((x) => x.from === 'build')) {
      for (const src of c.sources) {
        const ok = produced.includes(src) || inBuild.some((p) => p === src || src.startsWith(`${p}/`) || p.startsWith(`${src}/`) || (p.endsWith('/') && src.startsWith(p)));
        assert.ok(ok, `COPY --from=build ${src}: the build stage neither copies nor produces it`);
      }
    }
    assert.ok(copies(runtime).some((c) => c.sources.includes(`/src/build/Release/${target}.node`)), 'the addon is in the runtime image');
  });

  test('the runtime has what the code resolves next to dist/ (package.json, proto, deploy, bin) under one root', () => {
    const workdir = runtime.instrs.filter((i) => i.op === 'WORKDIR').at(-1)?.args;
    assert.equal(workdir, '/opt/ambit');
    const dests = copies(runtime).map((c) => c.dest.replace(/^\.\//, '').replace(/\/$/, ''));
    for (const need of ['package.json', 'node_modules', 'dist/src', 'proto', 'deploy', 'bin', 'build/Release/ambit_native.node']) assert.ok(dests.includes(need), `runtime lacks ${need}`);
    // The asset paths in the code are relative to dist/src/<subsystem>/: ../../../<asset>.
    for (const [file, asset] of [
      ['src/cni/deploy-render.ts', 'deploy/'],
      ['src/workload-api/proto.ts', 'proto/'],
      ['src/cli/version-command.ts', 'package.json'],
    ] as const) {
      assert.ok(readFileSync(`${ROOT}${file}`, 'utf8').includes(`'../../../${asset}'`), `${file} resolves ${asset} as the image lays it out`);
    }
  });

  test('the entrypoint runs bin/ambit.js, which loads the compiled CLI', () => {
    const ep = runtime.instrs.find((i) => i.op === 'ENTRYPOINT');
    assert.ok(ep);
    const argv = JSON.parse(ep.args) as string[];
    assert.equal(argv[0], 'node');
    assert.equal(argv[1], '/opt/ambit/bin/ambit.js');
    assert.match(readFileSync(`${ROOT}bin/ambit.js`, 'utf8'), /import '\.\.\/dist\/src\/cli\/main\.js'/);
  });

  test('it ends as a non-root user (the node DaemonSet opts into root itself)', () => {
    const user = runtime.instrs.filter((i) => i.op === 'USER').at(-1)?.args;
    assert.ok(user, 'a USER instruction');
    const uid = user.split(':')[0] as string;
    assert.ok(uid !== '0' && uid !== 'root', `USER ${user}`);
    assert.match(runtime.instrs.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n'), new RegExp(`useradd .*--uid ${uid}\\b`));
  });

  test('the parser sees a broken Dockerfile as broken (the checks can fail)', () => {
    const bad = parseDockerfile('FROM node:18-slim\nCOPY nope ./x\nUSER root\n');
    assert.equal(bad.stages.length, 1);
    assert.equal(bad.stages[0]?.image, 'node:18-slim');
    assert.deepEqual(copies(bad.stages[0] as Stage)[0]?.sources, ['nope']);
    assert.ok(!existsSync(`${ROOT}nope`));
  });
});
