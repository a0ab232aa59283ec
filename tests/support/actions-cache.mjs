// Drives the official @actions/cache client the way actions/cache does.
// node actions-cache.mjs save KEY PATH...
// node actions-cache.mjs restore KEY RESTORE_KEYS(comma-separated, may be empty) PATH...
// Prints {"result": ...}: the entry id of a save (-1 when skipped), the matched key of a restore.
import * as cache from '@actions/cache';

const [verb, key, ...rest] = process.argv.slice(2);
let result;
if (verb === 'save') {
  result = await cache.saveCache(rest, key);
} else {
  const [restoreKeys, ...paths] = rest;
  result = await cache.restoreCache(paths, key, restoreKeys ? restoreKeys.split(',') : []);
}
console.log(JSON.stringify({ result: result ?? null }));
