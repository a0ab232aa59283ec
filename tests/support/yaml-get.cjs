// node yaml-get.cjs YAML_DIR FILE KEY/PATH...: print the string at a slash-separated path of a YAML
// file (sequence items by index), custom tags such as GitLab's !reference kept as plain data.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const [yamlDir, file, ...paths] = process.argv.slice(2);
const YAML = require(path.join(yamlDir, 'node_modules/yaml'));
const doc = YAML.parse(fs.readFileSync(file, 'utf8'), {
  customTags: [{ tag: '!reference', collection: 'seq', resolve: (v) => v }],
});
for (const p of paths) {
  const v = p.split('/').reduce((o, k) => (o == null ? o : o[k]), doc);
  if (typeof v !== 'string') {
    console.error(`${p} is not a string in ${file}`);
    process.exit(1);
  }
  process.stdout.write(`${v}\n`);
}
