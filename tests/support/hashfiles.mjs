// GitHub's hashFiles() as the runner evaluates it, on the real @actions/glob:
// patterns (newline-separated) from KURA_PATTERNS, the workspace is the current directory,
// symlinks are not followed; every matched file under the workspace, directories skipped,
// in glob order; the sha256 of the concatenated sha256 digests, hex; "" when nothing matched.
import * as glob from '@actions/glob'
import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { sep } from 'node:path'

const root = process.cwd()
const globber = await glob.create(process.env.KURA_PATTERNS ?? '', { followSymbolicLinks: false })
const total = createHash('sha256')
let matched = 0
for await (const file of globber.globGenerator()) {
  if (!file.startsWith(root + sep) || statSync(file).isDirectory()) continue
  total.update(createHash('sha256').update(readFileSync(file)).digest())
  matched++
}
// @actions/core prints ::debug:: lines on stdout; the answer is the line after the marker.
process.stdout.write('\nhashFiles=' + (matched ? total.digest('hex') : '') + '\n')
