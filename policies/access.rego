# Package access.v1 decides every disclosure under a consent, at the moment
# of access. Revocation, expiry, suspension and a stricter terms version
# take effect on the very next request: the plan below (what the terms,
# the scope and the regulator say) may be reused only for the same terms,
# consent, request and policy, and the rest is checked every time.
#
# Query data.access.v1.decision. It always yields one object:
#   effect   "allow" | "deny"
#   scope    what may be disclosed (null on deny)
#   reasons  [{source, rule, text}] a customer can read
#   rules    numbers of the customer's current rules that decided
package access.v1

import data.contract.v1 as contract
import data.regulatory.v1 as regulatory
import data.terms.v1 as terms

# The decision comes in two parts. plan is everything that depends only
# on what stays the same between two requests for the same data under the
# same consent and terms: the consent's scope, the customer's current terms
# and the regulator's baseline. The rest (the consent's state and expiry,
# the firm's standing, the counts) is checked on every request.
#
# plan MUST NOT read input.now_ns, input.counts, input.consent.state,
# input.firm.status or input.plan, except that package terms.v1 reads
# input.now_ns against rule windows only. broker/policy checks this when it
# compiles the policy, and only then evaluates plan once per (policy,
# terms, consent, request, rule window) and passes it in with
# `with data.access.v1.plan as input.plan`.
plan := {
	"refusals": refusals,
	"limits": limits,
	"ends": ends,
	"in_scope": in_scope_all,
	"allow": allow,
	"rules": rules,
	"clear": plan_clear,
	"until_ns": until_ns,
	"caps": caps,
}

# ---- Checked on every request ----

# The consent itself.
deny contains {"source": "consent", "text": msg} if {
	input.consent.state != "granted"
	msg := sprintf("This consent is %s, so nothing may be shared under it.", [input.consent.state])
}

deny contains {"source": "consent", "text": msg} if {
	input.consent.state == "granted"
	input.now_ns >= input.consent.expires_at_ns
	msg := sprintf("This consent expired on %s.", [input.consent.expires_text])
}

# The firm's standing.
deny contains {"source": "firm", "text": "This firm's account is suspended, so it may not receive data."} if {
	input.firm.status == "suspended"
}

deny contains {"source": "firm", "text": "This firm is not yet approved to receive data."} if {
	not input.firm.status in {"approved", "suspended"}
}

# Frequency limits: the consent's and the current terms'. Counts of earlier
# accesses under this consent are supplied per window; a missing count
# fails closed.
deny contains {"source": "consent", "text": "Steward could not count this firm's earlier requests, so it refuses to be safe."} if {
	some x in plan.limits
	not is_number(object.get(input.counts, x.limit.per, null))
}

deny contains {"source": "consent", "text": msg} if {
	some x in plan.limits
	x.source == "consent"
	input.counts[x.limit.per] >= x.limit.max
	msg := sprintf("This firm has reached the limit you agreed to: at most %s.", [x.limit.text])
}

deny contains {"source": "terms", "rule": x.rule, "text": msg} if {
	some x in plan.limits
	x.source == "terms"
	input.counts[x.limit.per] >= x.limit.max
	msg := sprintf("Your rule %d lets a firm fetch your data at most %s, and this firm has reached that.", [x.rule, x.limit.text])
}

# Time limits on the consent's age, from the current terms and the law.
deny contains x.reason if {
	some x in plan.ends
	input.now_ns >= x.at_ns
}

# Everything the plan refuses.
deny contains x if some x in plan.refusals

# ---- The plan ----

refusals contains {"source": "consent", "text": "This consent was given to a different firm."} if {
	input.consent.firm_id != input.firm.id
}

# Scope: categories, fields, purpose.
in_scope(c) if c in input.consent.scope.categories

in_scope(c) if {
	some g in input.consent.scope.categories
	terms.category_covers(g, c)
	not input.consent.scope.fields[g]
}

refusals contains {"source": "consent", "text": msg} if {
	some c in input.request.categories
	not in_scope(c)
	msg := sprintf("You did not agree to share %s with this firm.", [label(data.taxonomy.categories, c)])
}

refusals contains {"source": "consent", "text": msg} if {
	some c, allowed in input.consent.scope.fields
	c in input.request.categories
	extra := {f | some f in input.request.fields[c]} - {f | some f in allowed}
	count(extra) > 0
	msg := sprintf("You agreed to share only %s of your %s, not %s.", [concat(", ", allowed), lower(label(data.taxonomy.categories, c)), concat(", ", sort(extra))])
}

refusals contains {"source": "consent", "text": msg} if {
	some c, allowed in input.consent.scope.fields
	c in input.request.categories
	not input.request.fields[c]
	msg := sprintf("You agreed to share only %s of your %s, not all of it.", [concat(", ", allowed), lower(label(data.taxonomy.categories, c))])
}

refusals contains {"source": "consent", "text": msg} if {
	not terms.purpose_covers(input.consent.scope.purpose, input.request.purpose)
	msg := sprintf("You agreed to share for %s, not for %s.", [lower(label(data.taxonomy.purposes, input.consent.scope.purpose)), lower(label(data.taxonomy.purposes, input.request.purpose))])
}

limits contains {"limit": f, "source": "consent", "rule": 0} if {
	f := input.consent.scope.frequency
	f.max > 0
}

limits contains {"limit": r.max_frequency, "source": "terms", "rule": r.n} if {
	some c in input.request.categories
	r := deciding[c]
	r.effect != "deny"
	r.max_frequency != null
}

# The current terms: a later, stricter version wins over the one the
# consent was given under.
verdicts := terms.verdicts

# deciding[c] is the rule that decided category c, if one did.
deciding[c] := input.terms.rules[v.rule - 1] if {
	some c, v in verdicts
	v.rule != null
}

refusals contains {"source": "terms", "rule": r.n, "text": msg} if {
	some c in input.request.categories
	verdicts[c].effect == "deny"
	r := deciding[c]
	msg := sprintf("Your current rule %d refuses %s.", [r.n, r.what])
}

ends contains {"at_ns": input.consent.decided_at_ns + (r.max_duration.s * 1000000000), "reason": {"source": "terms", "rule": r.n, "text": msg}} if {
	some c in input.request.categories
	r := deciding[c]
	r.effect != "deny"
	r.max_duration != null
	msg := sprintf("Your current rule %d allows this for at most %s, and this consent is older than that.", [r.n, r.max_duration.text])
}

# A consent given automatically under a standing allow no longer stands
# once the current terms (or the law) want the customer asked.
refusals contains {"source": "terms", "text": msg} if {
	not input.consent.explicit
	asked := {c | some c in input.request.categories; verdicts[c].effect == "ask"}
	count(asked) > 0
	msg := sprintf("Your current terms ask you first about %s; this consent was given automatically, so the firm must ask again.", [terms.category_labels(asked)])
}

refusals contains {"source": "regulation", "text": x.text} if {
	not input.consent.explicit
	some x in regulatory.ask_required
}

# The regulator's baseline.
refusals contains {"source": "regulation", "text": x.text} if some x in regulatory.deny

refusals contains contract.refusal if contract.regulation_broken

ends contains {"at_ns": input.consent.decided_at_ns + (x.s * 1000000000), "reason": {"source": "regulation", "text": x.text}} if {
	some x in regulatory.duration_caps
}

# label is a taxonomy entry's label, or its name when the taxonomy does
# not know it, so a refusal's message can always be written.
label(entries, name) := object.get(entries, [name, "label"], name)

# in_scope_all is the scope checks stated positively: the right firm,
# every category within the consent, and its purpose.
default in_scope_all := false

in_scope_all if {
	input.consent.firm_id == input.firm.id
	every c in input.request.categories {
		in_scope(c)
	}
	terms.purpose_covers(input.consent.scope.purpose, input.request.purpose)
}

unconfirmed := {"source": "consent", "text": "Steward could not confirm that this disclosure is allowed, so it refuses to be safe."}

allowed_reason := {"source": "consent", "text": msg} if {
	msg := sprintf("You agreed on %s to share %s with this firm until %s.", [input.consent.decided_text, input.consent.scope_text, input.consent.expires_text])
}

# allow is the decision when clear holds.
allow := {
	"effect": "allow",
	"scope": {"categories": input.request.categories, "fields": input.request.fields, "purpose": input.request.purpose},
	"reasons": [allowed_reason],
	"rules": rules,
}

# The decision allows only when clear holds: every check above restated
# positively, over summaries the plan computes once. When clear holds no
# deny rule can match (each has its negation here), so an allow need not
# build every refusal's message; and a check whose message could not be
# built still refuses, because clear does not hold. Anything else is a
# deny, with the refusals as reasons.
default plan_clear := false

plan_clear if {
	in_scope_all
	count(refusals) == 0
}

# until_ns is when the consent stops standing: its expiry or the first of
# its ends, whichever is sooner.
until_ns := min({input.consent.expires_at_ns} | {x.at_ns | some x in ends})

# caps[per] is the lowest limit on the count in the window per.
caps[per] := min({x.limit.max | some x in limits; x.limit.per == per}) if {
	some y in limits
	per := y.limit.per
}

default clear := false

clear if {
	plan.clear == true
	input.consent.state == "granted"
	input.firm.status == "approved"
	input.now_ns < plan.until_ns
	count([per | some per, m in plan.caps; not below(per, m)]) == 0
}

# below(per, m) is true when the count for window per is known and under m.
# (A function, because OPA would hoist input.counts[per] out of a "not".)
below(per, m) if {
	n := input.counts[per]
	is_number(n)
	n < m
}

decision := plan.allow if {
	clear
} else := {"effect": "deny", "scope": null, "reasons": [x | some x in deny], "rules": plan.rules} if {
	count(deny) > 0
} else := {"effect": "deny", "scope": null, "reasons": [unconfirmed], "rules": plan.rules}

rules := sort({v.rule | some v in verdicts; v.rule != null})
