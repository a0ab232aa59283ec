#!/usr/bin/env node
// Pack orb/src into one orb.yml, as `circleci orb pack` does: @orb.yml at the top, each
// directory a key and each file in it an entry named after the file, and `<<include(path)>>`
// in commands replaced by the file's contents. Needs the `yaml` package (NODE_PATH).
//   NODE_PATH=<dir>/node_modules node orb/pack.cjs > orb/orb.yml
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');

const src = path.join(__dirname, 'src');
const orb = YAML.parse(fs.readFileSync(path.join(src, '@orb.yml'), 'utf8'));

function include(value) {
  if (typeof value === 'string') {
    return value.replace(/<<\s*include\(([-\w/.]+)\)\s*>>/g, (_, file) =>
      fs.readFileSync(path.join(src, file), 'utf8').replace(/<</g, '\\<<'));
  }
  if (Array.isArray(value)) return value.map(include);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, include(v)]));
  }
  return value;
}

for (const dir of ['commands', 'jobs', 'executors', 'examples']) {
  const where = path.join(src, dir);
  if (!fs.existsSync(where)) continue;
  const files = fs.readdirSync(where).filter((f) => f.endsWith('.yml')).sort();
  orb[dir] = {};
  for (const f of files) {
    const doc = YAML.parse(fs.readFileSync(path.join(where, f), 'utf8'), { merge: true });
    orb[dir][f.replace(/\.yml$/, '')] = dir === 'examples' ? doc : include(doc);
  }
}
process.stdout.write('# Packed from orb/src by orb/pack.cjs; edit the sources, not this file.\n' +
  YAML.stringify(orb, { lineWidth: 0 }));
