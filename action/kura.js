// The GitHub Action's shim: find the kura binary and run one step with it. The runner gives
// ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL only to JavaScript actions; kura inherits
// them here, reads the INPUT_* variables itself and writes the outputs, state and summary.
//
// The binary: KURA_BIN if set; else the release asset for this runner's OS and arch, from
// the release the action is pinned to (GITHUB_ACTION_REF), checked against the sha256 list
// kept beside this file, and kept in the runner's tool cache. KURA_DOWNLOAD_URL replaces
// https://github.com/<action repository>/releases/download/<ref> (a mirror, or GHES).
//
// An install that cannot happen (no binary for this platform, no sha256 for it yet, a
// download that fails or takes longer than KURA_DOWNLOAD_TIMEOUT seconds, default 120)
// degrades as a cache does: a warning, and the step is a miss. A binary whose sha256 differs
// is never run, and fails the step.
'use strict';
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const TARGETS = {
  'linux-x64': 'x86_64-unknown-linux-musl',
  'linux-arm64': 'aarch64-unknown-linux-musl',
  'darwin-x64': 'x86_64-apple-darwin',
  'darwin-arm64': 'aarch64-apple-darwin',
};

function fail(msg) {
  console.log(`::error::${msg}`);
  process.exit(1);
}

class NoBinary extends Error {}

// The runner's file-command form, as @actions/core writes it.
function setOutput(name, value) {
  const file = process.env.GITHUB_OUTPUT;
  if (!file) return;
  const delim = `ghadelimiter_${crypto.randomUUID()}`;
  fs.appendFileSync(file, `${name}<<${delim}\n${value}\n${delim}\n`);
}

// No kura for this step: the step goes on as a cache miss would.
function degrade(step, why) {
  const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] || '').trim();
  if (step === 'restore') {
    console.log(`::warning::${why}; no cache is restored`);
    setOutput('cache-hit', '');
    setOutput('cache-primary-key', input('key'));
    setOutput('cache-matched-key', '');
    if (input('fail-on-cache-miss') === 'true') {
      fail(`Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: ${input('key')}`);
    }
  } else {
    console.log(`::warning::${why}; the cache is not saved`);
  }
}

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

async function download(url, dest) {
  const secs = Number(process.env.KURA_DOWNLOAD_TIMEOUT) > 0 ? Number(process.env.KURA_DOWNLOAD_TIMEOUT) : 120;
  try {
    const signal = AbortSignal.timeout(secs * 1000);
    const res = await fetch(url, { redirect: 'follow', signal });
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    fs.writeFileSync(dest, Buffer.from(await res.arrayBuffer()));
  } catch (e) {
    const why = e.name === 'TimeoutError' ? `no answer within ${secs} s (KURA_DOWNLOAD_TIMEOUT)` : e.message;
    throw new NoBinary(`cannot download kura from ${url} (${why}); set KURA_BIN to a kura binary instead`);
  }
}

async function binary() {
  if (process.env.KURA_BIN) return process.env.KURA_BIN;
  const target = TARGETS[`${process.platform}-${process.arch}`];
  if (!target) throw new NoBinary(`kura has no release binary for ${process.platform}-${process.arch} (Linux and macOS only); build it and set KURA_BIN`);
  const asset = `kura-${target}`;
  const sums = fs.readFileSync(path.join(__dirname, 'sha256sums.txt'), 'utf8');
  const line = sums.split('\n').find((l) => l.trim().endsWith(`  ${asset}`));
  if (!line) throw new NoBinary(`the action's sha256sums.txt has no sha256 for ${asset}: the list is written when a release is made, so a commit between releases cannot download kura; pin the action to a release tag (uses: kura-cache/kura@v0.1.0), or set KURA_BIN to a kura you built`);
  const want = line.trim().split(/\s+/)[0];
  const ref = process.env.GITHUB_ACTION_REF || 'unknown';
  const cache = process.env.RUNNER_TOOL_CACHE || os.tmpdir();
  const dir = path.join(cache, 'kura', ref.replace(/[^\w.-]/g, '_'), process.arch);
  const bin = path.join(dir, asset);
  if (fs.existsSync(bin) && sha256(bin) === want) return bin;
  const base = process.env.KURA_DOWNLOAD_URL ||
    `https://github.com/${process.env.GITHUB_ACTION_REPOSITORY}/releases/download/${ref}`;
  fs.mkdirSync(dir, { recursive: true });
  const part = `${bin}.part`;
  try {
    await download(`${base.replace(/\/$/, '')}/${asset}`, part);
  } finally {
    if (!fs.existsSync(part) || fs.statSync(part).size === 0) fs.rmSync(part, { force: true });
  }
  const got = sha256(part);
  if (got !== want) {
    fs.rmSync(part, { force: true });
    fail(`the downloaded ${asset} has sha256 ${got}, but the action expects ${want}; not running it`);
  }
  fs.chmodSync(part, 0o755);
  fs.renameSync(part, bin);
  return bin;
}

exports.run = async function run(step) {
  let bin;
  try {
    bin = await binary();
  } catch (e) {
    if (!(e instanceof NoBinary)) throw e;
    degrade(step, e.message);
    return;
  }
  const r = spawnSync(bin, ['action', step], { stdio: 'inherit', env: process.env });
  if (r.error) fail(`cannot run ${bin}: ${r.error.message}`);
  process.exitCode = r.status === null ? 1 : r.status;
};
