# Package terms.v1 matches a customer's terms rules against the request in
# the input. Consent and access inputs share the fields it reads:
# input.terms, input.firm, input.request.purpose and .categories, and
# input.now_ns.
#
# For each requested category: a deny rule that touches it refuses it,
# wherever the rule stands; otherwise the first allow or ask rule that
# applies decides; when none does, the customer is asked.
#
# An allow rule must cover the whole request: Marketing covers
# DirectMarketing, DirectMarketing does not cover Marketing. A deny or ask
# rule applies as soon as it touches the request, covering it or lying
# within it: refusing EmailAddress refuses a request for all Contact
# details. A rule applies only inside its validity window [from, until)
# and only to the firms, sectors and jurisdictions it names (naming none
# means any).
#
# Rules are numbered n from 1 (input.terms.rules[n-1]). Besides the names
# as written, broker/policy gives each rule, once per terms version, its
# names expanded along data.taxonomy:
#   cover_categories  {name: true} for the rule's categories and every
#                     category under them
#   touch_categories  the same plus every category above them
#   any_category      true when the rule names no category
# and for the parties firm_set/any_firm, sector_set/any_sector and
# jurisdiction_set/any_jurisdiction. Purposes are indexed instead:
# input.terms.index.purpose_cover[p] lists the rules naming p or a purpose
# above it, purpose_within[p] those naming a purpose below it, and
# any_purpose those naming none, so a request never walks every rule.
#
# input.now_ns is read only against rule windows [from_ns, until_ns):
# broker/policy relies on that to reuse the access plan within a window
# (see access.rego).
#
# Performance: this runs on every disclosure. It uses no functions and no
# set algebra on the hot path (both are costly in OPA's evaluator); each
# rule is checked with a handful of lookups.
package terms.v1

# relation says which expansion of a rule's categories applies, by effect.
relation := {"allow": "cover_categories", "ask": "touch_categories", "deny": "touch_categories"}

# candidates: the rules that can concern the request's purpose. An allow
# rule must cover it; a deny or ask rule may also lie within it.
candidates := array.concat(
	array.concat(input.terms.index.any_purpose, object.get(input.terms.index.purpose_cover, input.request.purpose, [])),
	[n | some n in object.get(input.terms.index.purpose_within, input.request.purpose, []); input.terms.rules[n - 1].effect != "allow"],
)

# eligible: the rules in force now, for this firm and this purpose, in order.
eligible := sort([n |
	some n in candidates
	r := input.terms.rules[n - 1]
	r.from_ns <= input.now_ns
	input.now_ns < r.until_ns
	object.get(r.firm_set, input.firm.id, r.any_firm)
	object.get(r.sector_set, input.firm.sector, r.any_sector)
	object.get(r.jurisdiction_set, input.firm.jurisdiction, r.any_jurisdiction)
])

# hits[c]: the eligible rules that apply to requested category c, in order.
hits[c] := [n |
	some n in eligible
	r := input.terms.rules[n - 1]
	object.get(r[relation[r.effect]], c, r.any_category)
] if some c in input.request.categories

denies[c] := [n | some n in list; input.terms.rules[n - 1].effect == "deny"] if some c, list in hits

# verdicts[c] is {effect, rule} for requested category c, rule being the
# number of the deciding rule or null.
verdicts[c] := {"effect": "deny", "rule": ds[0]} if {
	some c, ds in denies
	count(ds) > 0
}

verdicts[c] := {"effect": input.terms.rules[n - 1].effect, "rule": n} if {
	some c, ds in denies
	count(ds) == 0
	count(hits[c]) > 0
	n := hits[c][0]
}

verdicts[c] := {"effect": "ask", "rule": null} if {
	some c, list in hits
	count(list) == 0
}

# category_covers(outer, inner) is true when outer is inner or an ancestor of it.
category_covers(outer, inner) if data.taxonomy.categories[inner].ancestors[outer]

# purpose_covers(outer, inner) is true when outer is inner or an ancestor of it.
purpose_covers(outer, inner) if data.taxonomy.purposes[inner].ancestors[outer]

# unmet[n] lists, as sentences, the conditions of deciding allow rule n
# that the request does not meet. A rule with unmet conditions asks
# instead of allowing.
unmet[n] := [m |
	some m in [onward_unmet(r), retention_unmet(r), compensation_unmet(r)]
	m != ""
] if {
	some v in verdicts
	v.effect == "allow"
	n := v.rule
	r := input.terms.rules[n - 1]
}

onward_unmet(r) := sprintf("Your rule %d allows this only if the firm does not pass your data on to others, and this firm wants to.", [r.n]) if {
	r.no_onward_transfer
	input.request.onward_transfer
} else := ""

retention_unmet(r) := sprintf("Your rule %d allows this only if the firm keeps your data for at most %s, and this firm does not say how long it keeps it.", [r.n, r.max_retention.text]) if {
	r.max_retention != null
	input.request.retention.s == 0
} else := sprintf("Your rule %d allows this only if the firm keeps your data for at most %s, and this firm wants to keep it for %s.", [r.n, r.max_retention.text, input.request.retention.text]) if {
	r.max_retention != null
	input.request.retention.s > r.max_retention.s
} else := ""

compensation_unmet(r) := sprintf("Your rule %d asks for at least %s, and this request offers nothing.", [r.n, r.min_compensation.text]) if {
	r.min_compensation != null
	input.request.compensation == null
} else := sprintf("Your rule %d asks for at least %s, and this request offers %s.", [r.n, r.min_compensation.text, input.request.compensation.text]) if {
	r.min_compensation != null
	not compensation_enough(r.min_compensation)
} else := ""

compensation_enough(min) if {
	input.request.compensation.currency == min.currency
	input.request.compensation.minor >= min.minor
}

# category_labels joins the human labels of categories: "Email address, Age".
category_labels(names) := concat(", ", [data.taxonomy.categories[c].label | some c in names])
