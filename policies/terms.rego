# Package terms.v1 matches a customer's terms rules against a request.
#
# Rules arrive in input.terms.rules, already numbered (n, from 1) and with
# their constraints turned into numbers by broker/policy. The taxonomy's
# hierarchy is in data.taxonomy: each name maps to its ancestors (itself
# included), so "covers" is one lookup.
#
# For each requested category: a deny rule that touches it refuses it,
# wherever the rule stands; otherwise the first allow or ask rule that
# applies decides; when none does, the customer is asked.
package terms.v1

# category_covers(outer, inner) is true when outer is inner or an ancestor of it.
category_covers(outer, inner) if data.taxonomy.categories[inner].ancestors[outer]

# purpose_covers(outer, inner) is true when outer is inner or an ancestor of it.
purpose_covers(outer, inner) if data.taxonomy.purposes[inner].ancestors[outer]

any_or_in(list, _) if count(list) == 0

any_or_in(list, x) if x in list

party_matches(r, firm) if {
	any_or_in(r.firms, firm.id)
	any_or_in(r.sectors, firm.sector)
	any_or_in(r.jurisdictions, firm.jurisdiction)
}

# active(r, now) is true when the rule's validity window [from, until) holds now.
active(r, now) if {
	r.from_ns <= now
	now < r.until_ns
}

# An allow rule must cover the whole request: Marketing covers
# DirectMarketing, DirectMarketing does not cover Marketing.
covers_category(r, _) if count(r.categories) == 0

covers_category(r, c) if {
	some rc in r.categories
	category_covers(rc, c)
}

covers_purpose(r, _) if count(r.purposes) == 0

covers_purpose(r, p) if {
	some rp in r.purposes
	purpose_covers(rp, p)
}

# A deny or ask rule applies as soon as it overlaps the request: refusing
# EmailAddress refuses a request for all Contact details.
touches_category(r, c) if covers_category(r, c)

touches_category(r, c) if {
	some rc in r.categories
	category_covers(c, rc)
}

touches_purpose(r, p) if covers_purpose(r, p)

touches_purpose(r, p) if {
	some rp in r.purposes
	purpose_covers(p, rp)
}

# applies(r, ctx, c): rule r speaks to category c of the request described
# by ctx = {firm, purpose, now_ns}.
applies(r, ctx, c) if {
	r.effect == "allow"
	active(r, ctx.now_ns)
	party_matches(r, ctx.firm)
	covers_purpose(r, ctx.purpose)
	covers_category(r, c)
}

applies(r, ctx, c) if {
	r.effect != "allow"
	active(r, ctx.now_ns)
	party_matches(r, ctx.firm)
	touches_purpose(r, ctx.purpose)
	touches_category(r, c)
}

# verdict(rules, ctx, c) is {effect, rule} for category c: the first deny
# that applies, else the first allow or ask that applies, else ask with no
# rule.
verdict(rules, ctx, c) := v if {
	denies := [r | some r in rules; r.effect == "deny"; applies(r, ctx, c)]
	count(denies) > 0
	v := {"effect": "deny", "rule": denies[0]}
} else := v if {
	others := [r | some r in rules; r.effect != "deny"; applies(r, ctx, c)]
	count(others) > 0
	v := {"effect": others[0].effect, "rule": others[0]}
} else := {"effect": "ask", "rule": null}

# unmet(r, req) lists, as sentences, the conditions of allow rule r that
# request req does not meet. A rule with unmet conditions asks instead.
unmet(r, req) := [m |
	some m in [onward_unmet(r, req), retention_unmet(r, req), compensation_unmet(r, req)]
	m != ""
]

onward_unmet(r, req) := sprintf("Your rule %d allows this only if the firm does not pass your data on to others, and this firm wants to.", [r.n]) if {
	r.no_onward_transfer
	req.onward_transfer
} else := ""

retention_unmet(r, req) := sprintf("Your rule %d allows this only if the firm keeps your data for at most %s, and this firm does not say how long it keeps it.", [r.n, r.max_retention.text]) if {
	r.max_retention != null
	req.retention.s == 0
} else := sprintf("Your rule %d allows this only if the firm keeps your data for at most %s, and this firm wants to keep it for %s.", [r.n, r.max_retention.text, req.retention.text]) if {
	r.max_retention != null
	req.retention.s > r.max_retention.s
} else := ""

compensation_unmet(r, req) := sprintf("Your rule %d asks for at least %s, and this request offers nothing.", [r.n, r.min_compensation.text]) if {
	r.min_compensation != null
	req.compensation == null
} else := sprintf("Your rule %d asks for at least %s, and this request offers %s.", [r.n, r.min_compensation.text, req.compensation.text]) if {
	r.min_compensation != null
	not compensation_enough(r.min_compensation, req.compensation)
} else := ""

compensation_enough(min, offer) if {
	offer.currency == min.currency
	offer.minor >= min.minor
}

# labels joins the human labels of taxonomy entries: "Email address, Age".
category_labels(names) := concat(", ", [data.taxonomy.categories[c].label | some c in names])
