// Builds static/dist/: the vendored, precompressed browser assets Larder serves under
// /static/{version}/. Run with `npm run build` (after `npm ci`). Wipes and recreates dist/ each
// time; the output (and so manifest.json's version) depends only on the inputs.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const pkg = (name, file) => join(here, 'node_modules', name, file);
const brotli = promisify(zlib.brotliCompress);
const gzip = promisify(zlib.gzip);
const started = Date.now();

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

// 1. The island: one ESM bundle with duckdb-wasm's browser entry and apache-arrow inside, so the
//    page needs no import map. It finds the worker and wasm next to itself via import.meta.url.
await build({
  entryPoints: [join(here, 'src/island.js')],
  outfile: join(dist, 'island.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  logLevel: 'warning',
});
await build({
  entryPoints: [join(here, 'src/app.css')],
  outfile: join(dist, 'app.css'),
  bundle: true,
  minify: true,
  logLevel: 'warning',
});

// 2. Vendored files (and our icon), copied as published (minus source-map comments pointing at files we do not ship).
const vendored = {
  'duckdb-eh.wasm': pkg('@duckdb/duckdb-wasm', 'dist/duckdb-eh.wasm'),
  'duckdb-browser-eh.worker.js': pkg('@duckdb/duckdb-wasm', 'dist/duckdb-browser-eh.worker.js'),
  'htmx.min.js': pkg('htmx.org', 'dist/htmx.min.js'),
  'favicon.svg': join(here, 'src/favicon.svg'),
};
for (const [name, from] of Object.entries(vendored)) {
  let bytes = await readFile(from);
  if (name.endsWith('.js')) {
    bytes = Buffer.from(bytes.toString('utf8').replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, '\n'));
  }
  await writeFile(join(dist, name), bytes);
}

// 3. Precompressed variants for everything over 1 KB. Brotli quality 9 keeps the 34 MB wasm at
//    ~8 s (quality 11 would take minutes for ~3% less); the async calls run on libuv's pool.
const files = (await readdir(dist)).sort();
const contents = new Map(await Promise.all(files.map(async (f) => [f, await readFile(join(dist, f))])));
const encodings = {};
const sizes = new Map();
await Promise.all(files.map(async (f) => {
  const bytes = contents.get(f);
  if (bytes.length <= 1024) return;
  const [br, gz] = await Promise.all([
    brotli(bytes, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: 9,
        [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
        [zlib.constants.BROTLI_PARAM_MODE]: f.endsWith('.wasm') ? zlib.constants.BROTLI_MODE_GENERIC : zlib.constants.BROTLI_MODE_TEXT,
      },
    }),
    gzip(bytes, { level: 9 }),
  ]);
  await Promise.all([writeFile(join(dist, `${f}.br`), br), writeFile(join(dist, `${f}.gz`), gz)]);
  contents.set(`${f}.br`, br);
  contents.set(`${f}.gz`, gz);
  encodings[f] = ['br', 'gz'];
  sizes.set(f, { br: br.length, gz: gz.length });
}));

// 4. manifest.json: version = first 12 hex of sha256 over every dist file's name and contents,
//    in sorted name order.
const hash = createHash('sha256');
for (const name of [...contents.keys()].sort()) {
  hash.update(name).update('\0').update(contents.get(name)).update('\0');
}
const version = hash.digest('hex').slice(0, 12);
const manifest = { version, files, encodings: Object.fromEntries(Object.entries(encodings).sort()) };
await writeFile(join(dist, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

const kb = (n) => `${(n / 1024).toFixed(1)} KB`.padStart(11);
for (const f of files) {
  const s = sizes.get(f);
  console.log(`${f.padEnd(30)} ${kb(contents.get(f).length)}${s ? `   br ${kb(s.br)}   gz ${kb(s.gz)}` : ''}`);
}
console.log(`dist/ version ${version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
