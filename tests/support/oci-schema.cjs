// node oci-schema.cjs AJV_DIR SCHEMA_DIR FILE...: validate OCI image manifests against the
// image-spec's JSON schema (draft-04, its $refs resolved to the files beside it), printing
// every error; exit 1 if any file is invalid.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const [ajvDir, schemaDir, ...files] = process.argv.slice(2);
const Ajv = require(path.join(ajvDir, 'node_modules/ajv-draft-04'));
// The files name their meta-schema with https://, which ajv-draft-04 knows as http://.
const load = (name) => {
  const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, name), 'utf8'));
  delete schema.$schema;
  return schema;
};
const ajv = new Ajv({
  allErrors: true,
  strict: false,
  // "defs-descriptor.json#/..." resolves against each schema's id; the file is the same.
  loadSchema: async (uri) => load(path.basename(new URL(uri).pathname)),
});
(async () => {
  const validate = await ajv.compileAsync(load('image-manifest-schema.json'));
  let bad = 0;
  for (const f of files) {
    if (!validate(JSON.parse(fs.readFileSync(f, 'utf8')))) {
      bad += 1;
      console.log(`${f}: ${JSON.stringify(validate.errors, null, 1)}`);
    } else {
      console.log(`${f}: valid`);
    }
  }
  process.exit(bad ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
