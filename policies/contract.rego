# Package contract.v1 guards the consent and access policies against a
# regulatory module that breaks its contract. Operators may replace or
# extend package regulatory.v1 (see regulatory.rego); an entry of the
# wrong shape, or a rule missing altogether, must refuse requests rather
# than be silently skipped, which would let them through.
package contract.v1

import data.regulatory.v1 as regulatory

# regulation_broken is true when any regulatory output is missing or
# malformed.
regulation_broken if not outputs_defined

regulation_broken if {
	some x in regulatory.deny
	string_field(x, "text") == null
}

regulation_broken if {
	some x in regulatory.ask_required
	string_field(x, "category") == null
}

regulation_broken if {
	some x in regulatory.ask_required
	string_field(x, "text") == null
}

regulation_broken if {
	some x in regulatory.duration_caps
	not valid_cap(x)
}

# outputs_defined is false when an operator's replacement of
# regulatory.rego leaves one of the three rules out. (A plain "not
# is_set(regulatory.deny)" would not do: OPA evaluates the reference
# before the negation, so an undefined rule makes the whole check
# undefined instead of true.)
default outputs_defined := false

outputs_defined if {
	is_set(regulatory.deny)
	is_set(regulatory.ask_required)
	is_set(regulatory.duration_caps)
}

# string_field(x, k) is x[k] when x is an object whose k is a string, else null.
string_field(x, k) := x[k] if {
	is_object(x)
	is_string(x[k])
} else := null

valid_cap(x) if {
	is_object(x)
	is_number(x.s)
	x.s > 0
	is_string(x.iso)
	is_string(x.text)
}

# refusal is the reason given when the regulation is broken.
refusal := {"source": "regulation", "text": "Steward could not apply the regulator's rules to this request, so it refuses to be safe."}
