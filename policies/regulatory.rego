# Package regulatory.v1 is the regulator's baseline: rules that hold
# whatever a customer's terms say. Operators may replace this file (a
# module with the same name in their directory or bundle) or extend the
# package from other files: every rule here is a partial set, so an extra
# module can add entries to deny, ask_required or duration_caps.
#
# Contract, for both consent and access inputs (see broker/policy):
#   deny          set of {text}: the whole request is refused.
#   ask_required  set of {category, text}: a standing allow is not enough;
#                 the customer must answer (consent) or must have answered
#                 (access) the request for that category themselves.
#   duration_caps set of {s, iso, text}: the longest a consent for the
#                 request's purpose may last.
#
# The access decision reuses these per consent and request (see
# access.rego) as long as no rule here reads input.now_ns, input.counts,
# input.consent.state or input.firm.status, or calls a non-deterministic
# builtin; a module that does still works, but every access decision is
# then made whole, which is slower.
package regulatory.v1

# Special categories of personal data (GDPR Art. 9, and anything holding
# them) always need the customer's own answer, never a standing allow.
ask_required contains {"category": c, "text": msg} if {
	some c in input.request.categories
	data.taxonomy.categories[c].special
	msg := sprintf("%s is a special category of personal data: the law requires you to answer each request for it yourself.", [object.get(data.taxonomy.categories, [c, "label"], c)])
}

# Customers under the age of digital consent cannot share for marketing.
deny contains {"text": "The law does not allow sharing data for marketing by someone under the age of digital consent."} if {
	input.customer.minor
	data.taxonomy.purposes[input.request.purpose].ancestors.Marketing
}

# Cross-border transfers: within one jurisdiction, or between
# jurisdictions in the free-flow area (EEA plus adequacy decisions).
free_flow := {
	"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT",
	"LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
	"GB", "CH", "JP", "KR", "NZ", "CA", "IL", "UY", "AR", "AD", "FO", "GG", "IM", "JE",
}

transfer_allowed if input.firm.jurisdiction == input.customer.jurisdiction

transfer_allowed if {
	free_flow[input.firm.jurisdiction]
	free_flow[input.customer.jurisdiction]
}

deny contains {"text": msg} if {
	not transfer_allowed
	msg := sprintf("The law does not allow your data to be sent from %s to a firm in %s.", [input.customer.jurisdiction, input.firm.jurisdiction])
}

# The longest consent the law allows, in days, per purpose; a purpose's
# children inherit its limit, and the tightest limit wins.
max_days := {
	"Marketing": 365,
	"ResearchAndDevelopment": 730,
	"ServiceProvision": 1825,
}

duration_caps contains {"s": days * 86400, "iso": sprintf("P%dD", [days]), "text": msg} if {
	some p, days in max_days
	data.taxonomy.purposes[input.request.purpose].ancestors[p]
	msg := sprintf("The law allows consent for %s to last at most %d days.", [lower(object.get(data.taxonomy.purposes, [p, "label"], p)), days])
}
