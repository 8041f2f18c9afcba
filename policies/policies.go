// Package policies embeds Steward's Rego v1 policy modules, their tests,
// the JSON Schema of the terms language and the taxonomy data file used
// when running `opa test policies/` on its own.
//
// It imports no other package of the project: broker/policy reads the
// modules, broker/terms reads the schema.
package policies

import "embed"

// FS holds every *.rego file (tests included), terms.schema.json and
// taxonomy/data.json.
//
//go:embed *.rego terms.schema.json taxonomy/data.json
var FS embed.FS

// SchemaFile is the name of the terms language's JSON Schema in FS.
const SchemaFile = "terms.schema.json"
