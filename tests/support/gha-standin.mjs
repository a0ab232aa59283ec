// A stand-in for GitHub's cache service v2 (Twirp JSON), the REST cache endpoints, and a
// proxy in front of a real Azurite that serves the signed blob URLs. Entries live in memory
// and match as GitHub's do: per read scope (from the token's `ac` claim), each key exact then
// as a prefix, newest first, same version only; keys compare case-insensitively.
//
// The legacy v1 service (GHES, act) is served too, under /<token>/_apis/artifactcache/:
// archives arrive as PATCHed ranges and are stored in Azurite at commit.
//
// Env: AZURITE (http://127.0.0.1:PORT of Azurite's blob service). Prints "ready PORT".
// Faults, for tests that run in parallel, apply to keys containing `match`:
//   POST /_admin/fault {match, rpc, status, times, retry_after, stall_after}
//   (rpc: a Twirp method, or "download" for blob GETs; stall_after: bytes sent before hanging)
//   GET /_admin/log?match=K   every request made for keys containing K
//   POST /_admin/corrupt?key=K[&short=1]   overwrite the second half of key K's blobs with noise
//     (short: cut it off)
//   POST /_admin/age?key=K&days=N   make key K look created and used N days ago
import http from 'node:http';
import crypto from 'node:crypto';
import {
  StorageSharedKeyCredential, generateBlobSASQueryParameters, BlobSASPermissions,
  BlobServiceClient,
} from '@azure/storage-blob';

const ACCOUNT = 'devstoreaccount1';
const ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const CONTAINER = 'actions-cache';
const azurite = new URL(process.env.AZURITE);
const cred = new StorageSharedKeyCredential(ACCOUNT, ACCOUNT_KEY);
const container = BlobServiceClient.fromConnectionString(
  `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${ACCOUNT_KEY};` +
  `BlobEndpoint=${azurite.origin}/${ACCOUNT};`,
).getContainerClient(CONTAINER);
await container.createIfNotExists();

const entries = [];
let nextId = 1;
const faults = [];
const log = [];
let port = 0;

function sas(blob, perms) {
  const q = generateBlobSASQueryParameters({
    containerName: CONTAINER, blobName: blob,
    permissions: BlobSASPermissions.parse(perms),
    startsOn: new Date(Date.now() - 60_000), expiresOn: new Date(Date.now() + 3_600_000),
    protocol: 'https,http',
  }, cred).toString();
  return `http://127.0.0.1:${port}/${ACCOUNT}/${CONTAINER}/${blob}?${q}`;
}

function scopes(req) {
  const token = (req.headers.authorization || '').replace(/^Bearer /, '');
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
    return JSON.parse(claims.ac);
  } catch {
    return [{ Scope: 'refs/heads/main', Permission: 3 }];
  }
}

function fault(key, rpc) {
  const f = faults.find((f) => f.rpc === rpc && f.times > 0 && key.includes(f.match));
  if (f) f.times -= 1;
  return f;
}

const same = (a, b) => a.localeCompare(b, undefined, { sensitivity: 'accent' }) === 0;
const newest = (list) => list.sort((a, b) => b.created - a.created || b.id - a.id)[0];

function find(readScopes, keys, version) {
  for (const scope of readScopes) {
    const here = entries.filter((e) => e.done && e.scope === scope && e.version === version);
    for (const k of keys) {
      const hit = newest(here.filter((e) => same(e.key, k))) ||
        newest(here.filter((e) => e.key.toLowerCase().startsWith(k.toLowerCase())));
      if (hit) return hit;
    }
  }
  return undefined;
}

function twirp(method, body, req) {
  const perms = scopes(req);
  const key = body.key || '';
  if (method === 'CreateCacheEntry') {
    const w = perms.find((s) => s.Permission & 2);
    if (!w) return [200, { ok: false, message: 'cache write denied: the token has no write scope' }];
    if (entries.some((e) => same(e.key, key) && e.version === body.version && e.scope === w.Scope)) {
      return [409, { code: 'already_exists', msg: 'cache entry with the same key, version, and scope already exists' }];
    }
    const e = { id: nextId++, key, version: body.version, scope: w.Scope, blob: `${crypto.randomUUID()}.tzst`,
      done: false, size: 0, created: 0, accessed: 0 };
    entries.push(e);
    return [200, { ok: true, signed_upload_url: sas(e.blob, 'cw') }];
  }
  if (method === 'FinalizeCacheEntryUpload') {
    const w = perms.find((s) => s.Permission & 2);
    const e = entries.find((e) => !e.done && same(e.key, key) && e.version === body.version && e.scope === w?.Scope);
    if (!e) return [200, { ok: false, message: `no reservation for key ${key}` }];
    Object.assign(e, { done: true, size: Number(body.size_bytes), created: Date.now(), accessed: Date.now() });
    return [200, { ok: true, entry_id: String(e.id) }];
  }
  if (method === 'GetCacheEntryDownloadURL') {
    const read = perms.filter((s) => s.Permission & 1).map((s) => s.Scope);
    if (read.length === 0) return [403, { code: 'permission_denied', msg: 'cache read denied: the token has no read scope' }];
    const e = find(read, [key, ...(body.restore_keys || [])], body.version);
    if (!e) return [200, { ok: false, signed_download_url: '', matched_key: '' }];
    e.accessed = Date.now();
    return [200, { ok: true, signed_download_url: sas(e.blob, 'r'), matched_key: e.key }];
  }
  return [404, { code: 'bad_route', msg: `no such method ${method}` }];
}

async function legacy(req, url, buf) {
  const perms = scopes(req);
  const m = url.pathname.match(/\/_apis\/artifactcache\/(cache|caches)(?:\/(\d+))?$/);
  if (!m) return [404, { message: 'Not Found' }];
  const w = perms.find((s) => s.Permission & 2);
  if (m[1] === 'cache' && req.method === 'GET') {
    const read = perms.filter((s) => s.Permission & 1).map((s) => s.Scope);
    const e = find(read, (url.searchParams.get('keys') || '').split(','), url.searchParams.get('version'));
    if (!e) return [204, null];
    e.accessed = Date.now();
    return [200, { cacheKey: e.key, scope: e.scope, cacheVersion: e.version,
      creationTime: new Date(e.created).toISOString(), archiveLocation: sas(e.blob, 'r') }];
  }
  if (m[1] === 'caches' && !m[2] && req.method === 'POST') {
    const body = JSON.parse(buf.toString() || '{}');
    if (!w) return [403, { message: 'No scopes with write permission were found on the request.' }];
    if (entries.some((e) => same(e.key, body.key) && e.version === body.version && e.scope === w.Scope)) {
      return [409, { message: `Cache already exists. Scope: ${w.Scope}, Key: ${body.key}, Version: ${body.version}` }];
    }
    const e = { id: nextId++, key: body.key, version: body.version, scope: w.Scope, blob: `${crypto.randomUUID()}.tzst`,
      done: false, size: 0, created: 0, accessed: 0, chunks: [] };
    entries.push(e);
    return [201, { cacheId: e.id }];
  }
  const e = entries.find((e) => e.id === Number(m[2]) && !e.done);
  if (!e) return [400, { message: 'no such reservation' }];
  if (req.method === 'PATCH') {
    const r = (req.headers['content-range'] || '').match(/^bytes (\d+)-(\d+)\/\*$/);
    if (!r || Number(r[2]) - Number(r[1]) + 1 !== buf.length) return [400, { message: 'bad Content-Range' }];
    e.chunks.push({ start: Number(r[1]), buf });
    return [204, null];
  }
  if (req.method === 'POST') {
    const size = JSON.parse(buf.toString()).size;
    e.chunks.sort((a, b) => a.start - b.start);
    let at = 0;
    for (const c of e.chunks) {
      if (c.start !== at) return [400, { message: `gap at ${at}` }];
      at += c.buf.length;
    }
    if (at !== size) return [400, { message: `size ${size} but ${at} bytes uploaded` }];
    await container.getBlockBlobClient(e.blob).uploadData(Buffer.concat(e.chunks.map((c) => c.buf)));
    Object.assign(e, { done: true, size, created: Date.now(), accessed: Date.now(), chunks: [] });
    return [204, null];
  }
  return [404, { message: 'Not Found' }];
}

const restEntry = (e) => ({ id: e.id, ref: e.scope, key: e.key, version: e.version,
  last_accessed_at: new Date(e.accessed).toISOString(), created_at: new Date(e.created).toISOString(),
  size_in_bytes: e.size });

function rest(req, url) {
  const auth = req.headers.authorization || '';
  if (!auth) return [401, { message: 'Requires authentication' }];
  const m = url.pathname.match(/^\/repos\/[^/]+\/[^/]+\/actions\/caches(?:\/(\d+))?$/);
  if (!m) return [404, { message: 'Not Found' }];
  const readOnly = auth.includes('read-only');
  const q = url.searchParams;
  const done = entries.filter((e) => e.done);
  if (req.method === 'GET') {
    let list = done.filter((e) => (!q.get('key') || e.key.startsWith(q.get('key'))) && (!q.get('ref') || e.scope === q.get('ref')));
    list.sort((a, b) => b.accessed - a.accessed);
    const per = Math.min(Number(q.get('per_page') || 30), 100);
    const page = Number(q.get('page') || 1);
    return [200, { total_count: list.length, actions_caches: list.slice((page - 1) * per, page * per).map(restEntry) }];
  }
  if (req.method === 'DELETE') {
    if (readOnly) return [403, { message: 'Resource not accessible by integration' }];
    const doomed = m[1]
      ? done.filter((e) => e.id === Number(m[1]))
      : done.filter((e) => e.key === q.get('key') && (!q.get('ref') || e.scope === q.get('ref')));
    if (doomed.length === 0) return [404, { message: 'Not Found' }];
    for (const d of doomed) entries.splice(entries.indexOf(d), 1);
    return m[1] ? [204, null] : [200, { total_count: doomed.length, actions_caches: doomed.map(restEntry) }];
  }
  return [404, { message: 'Not Found' }];
}

function proxy(req, res, url) {
  const blob = url.pathname.split('/').pop();
  const entry = entries.find((e) => e.blob === blob);
  const key = entry ? entry.key : '';
  log.push({ key, kind: 'blob', method: req.method, comp: url.searchParams.get('comp') || '', range: req.headers['x-ms-range'] || req.headers.range || '' });
  const f = req.method === 'GET' ? fault(key, 'download') : undefined;
  if (f && f.status) {
    res.writeHead(f.status).end();
    return;
  }
  const headers = { ...req.headers, host: azurite.host };
  const up = http.request({ host: azurite.hostname, port: azurite.port, method: req.method,
    path: url.pathname + url.search, headers }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    if (f && f.stall_after !== undefined) {
      let sent = 0;
      r.on('data', (chunk) => {
        if (sent >= f.stall_after) return; // hang: the connection stays open, no more bytes
        const part = chunk.subarray(0, f.stall_after - sent);
        sent += part.length;
        res.write(part);
      });
      return;
    }
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
}

function send(res, status, body, extra = {}) {
  if (body === null) return res.writeHead(status, extra).end();
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra }).end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname.startsWith(`/${ACCOUNT}/`)) return proxy(req, res, url);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const buf = Buffer.concat(chunks);
    const raw = buf.toString();
    if (url.pathname.includes('/_apis/artifactcache/')) {
      const id = Number((url.pathname.match(/caches\/(\d+)$/) || [])[1]);
      let key = url.searchParams.get('keys') || entries.find((e) => e.id === id)?.key || '';
      if (!key && req.method === 'POST') try { key = JSON.parse(raw).key || ''; } catch {}
      log.push({ key, kind: 'v1', method: req.method, path: url.pathname });
      const [status, out] = await legacy(req, url, buf);
      return send(res, status, out);
    }
    if (url.pathname === '/_admin/fault') {
      faults.push(JSON.parse(raw));
      return send(res, 200, {});
    }
    if (url.pathname === '/_admin/corrupt') {
      // Replace the second half of the blobs of entries with this exact key by noise.
      const k = url.searchParams.get('key') || '';
      const hit = entries.filter((e) => e.done && e.key === k);
      const short = url.searchParams.get('short') === '1';
      for (const e of hit) {
        const blob = container.getBlockBlobClient(e.blob);
        const data = await blob.downloadToBuffer();
        const half = Math.floor(data.length / 2);
        if (short) {
          await blob.uploadData(data.subarray(0, half)); // cut short: the first half only
        } else {
          crypto.randomFillSync(data, half);
          await blob.uploadData(data);
        }
      }
      return send(res, 200, { corrupted: hit.length });
    }
    if (url.pathname === '/_admin/age') {
      // Make entries with this exact key look created and last used `days` ago.
      const k = url.searchParams.get('key') || '';
      const days = Number(url.searchParams.get('days') || 0);
      const hit = entries.filter((e) => e.done && e.key === k);
      for (const e of hit) { e.created -= days * 86_400_000; e.accessed = e.created; }
      return send(res, 200, { aged: hit.length });
    }
    if (url.pathname === '/_admin/log') {
      const k = url.searchParams.get('match') || '';
      return send(res, 200, log.filter((l) => l.key.includes(k)));
    }
    const t = url.pathname.match(/^\/twirp\/github\.actions\.results\.api\.v1\.CacheService\/(\w+)$/);
    if (t) {
      let body;
      try { body = JSON.parse(raw || '{}'); } catch { return send(res, 400, { code: 'malformed', msg: 'bad json' }); }
      log.push({ key: body.key || '', kind: 'twirp', method: t[1], body, auth: req.headers.authorization || '' });
      const f = fault(body.key || '', t[1]);
      if (f) {
        const extra = f.retry_after !== undefined ? { 'retry-after': String(f.retry_after) } : {};
        return send(res, f.status, { code: 'fault', msg: f.msg || `injected ${f.status}` }, extra);
      }
      const [status, out] = twirp(t[1], body, req);
      return send(res, status, out);
    }
    if (url.pathname.startsWith('/repos/')) {
      log.push({ key: url.searchParams.get('key') || '', kind: 'rest', method: req.method, path: url.pathname, auth: req.headers.authorization || '' });
      const [status, out] = rest(req, url);
      return send(res, status, out);
    }
    send(res, 404, { message: 'Not Found' });
  });
});
server.listen(0, '127.0.0.1', () => {
  port = server.address().port;
  console.log(`ready ${port}`);
});
