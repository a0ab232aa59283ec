// node validate.cjs AJV_DIR YAML_DIR SCHEMA FILE...: validate YAML files against a JSON schema
// (draft-07), printing every error; exit 1 if any file is invalid.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const [ajvDir, yamlDir, schemaFile, ...files] = process.argv.slice(2);
const Ajv = require(path.join(ajvDir, 'node_modules/ajv'));
const YAML = require(path.join(yamlDir, 'node_modules/yaml'));
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaFile, 'utf8')));
let bad = 0;
for (const f of files) {
  const doc = YAML.parse(fs.readFileSync(f, 'utf8'));
  if (!validate(doc)) {
    bad += 1;
    console.log(`${f}: ${JSON.stringify(validate.errors, null, 1)}`);
  } else {
    console.log(`${f}: valid`);
  }
}
process.exit(bad ? 1 : 0);
