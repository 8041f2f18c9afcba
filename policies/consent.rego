# Package consent.v1 answers a firm's request for consent.
#
# Query data.consent.v1.decision. It always yields one object:
#   effect   "allow" | "deny" | "ask"
#   scope    the most that may be granted (null on deny): only the
#            categories not refused, duration and frequency capped
#   reasons  [{source, rule, text}] a customer can read
#   rules    numbers of the customer's rules that decided
package consent.v1

import data.contract.v1 as contract
import data.regulatory.v1 as regulatory
import data.terms.v1 as terms

# verdicts[c] is what the customer's terms say about category c.
verdicts := terms.verdicts

# deciding[c] is the rule that decided category c, if one did.
deciding[c] := input.terms.rules[v.rule - 1] if {
	some c, v in verdicts
	v.rule != null
}

ask_categories := {x.category | some x in regulatory.ask_required}

# status[c] is the outcome for one category once conditions and the
# regulator's rules are applied to the terms' verdict.
status[c] := "deny" if verdicts[c].effect == "deny"

status[c] := "ask" if verdicts[c].effect == "ask"

status[c] := "ask" if {
	verdicts[c].effect == "allow"
	not allow_stands(c)
}

status[c] := "allow" if {
	verdicts[c].effect == "allow"
	allow_stands(c)
}

allow_stands(c) if {
	count(terms.unmet[verdicts[c].rule]) == 0
	not ask_categories[c]
}

kept := {c | some c, s in status; s != "deny"}

firm_denies contains {"source": "firm", "text": "This firm is not approved to ask for data at the moment."} if {
	input.firm.status != "approved"
}

whole_denies := (firm_denies | {{"source": "regulation", "text": x.text} | some x in regulatory.deny}) | broken

broken := {contract.refusal} if contract.regulation_broken

else := set()

effect := "deny" if {
	count(whole_denies) > 0
} else := "deny" if {
	count(kept) == 0
} else := "ask" if {
	some s in status
	s == "ask"
} else := "allow"

# Duration: the request's, capped by the deciding rules and the regulator.
duration_caps contains {"s": input.request.duration.s, "iso": input.request.duration.iso, "source": "request"}

duration_caps contains {"s": r.max_duration.s, "iso": r.max_duration.iso, "source": "terms", "rule": r.n, "human": r.max_duration.text} if {
	some c in kept
	r := deciding[c]
	r.max_duration != null
}

duration_caps contains {"s": x.s, "iso": x.iso, "source": "regulation", "text": x.text} if some x in regulatory.duration_caps

shortest := min({x.s | some x in duration_caps})

duration := [x | some x in duration_caps; x.s == shortest][0]

# Frequency: the slowest rate among the request's and the deciding rules'.
frequency_caps contains object.union(input.request.frequency, {"source": "request"}) if input.request.frequency.max > 0

frequency_caps contains object.union(r.max_frequency, {"source": "terms", "rule": r.n}) if {
	some c in kept
	r := deciding[c]
	r.max_frequency != null
}

rate(f) := f.max / f.per_s

slowest := min({rate(x) | some x in frequency_caps})

frequency := {"max": f.max, "per": f.per} if {
	f := [x | some x in frequency_caps; rate(x) == slowest][0]
} else := {"max": 0, "per": ""}

scope := null if {
	effect == "deny"
} else := {
	"categories": sort(kept),
	"fields": object.filter(input.request.fields, kept),
	"purpose": input.request.purpose,
	"duration": duration.iso,
	"frequency": frequency,
}

# Reasons, most decisive first.
rule_reasons contains {"source": "terms", "rule": r.n, "text": text} if {
	some c in input.request.categories
	r := deciding[c]
	text := rule_text(r)
}

rule_text(r) := sprintf("Your rule %d refuses %s.", [r.n, r.what]) if r.effect == "deny"

rule_text(r) := sprintf("Your rule %d asks you first about %s.", [r.n, r.what]) if r.effect == "ask"

rule_text(r) := sprintf("Your rule %d allows %s%s.", [r.n, r.what, for_up_to(r)]) if r.effect == "allow"

for_up_to(r) := sprintf(" for up to %s", [r.max_duration.text]) if r.max_duration != null

else := ""

unmatched := {c | some c in input.request.categories; verdicts[c].rule == null}

default_reasons contains {"source": "terms", "text": msg} if {
	count(unmatched) > 0
	msg := sprintf("None of your rules covers %s for %s by this firm, so you are asked.", [terms.category_labels(unmatched), lower(data.taxonomy.purposes[input.request.purpose].label)])
}

condition_reasons contains {"source": "terms", "rule": verdicts[c].rule, "text": m} if {
	some c in input.request.categories
	verdicts[c].effect == "allow"
	some m in terms.unmet[verdicts[c].rule]
}

special_reasons contains {"source": "regulation", "text": x.text} if {
	some x in regulatory.ask_required
	verdicts[x.category].effect == "allow"
}

cap_reasons contains {"source": "terms", "rule": duration.rule, "text": msg} if {
	duration.source == "terms"
	duration.s < input.request.duration.s
	msg := sprintf("The firm asked for %s; your rule %d limits it to %s.", [input.request.duration.text, duration.rule, duration.human])
}

cap_reasons contains {"source": "regulation", "text": duration.text} if {
	duration.source == "regulation"
	duration.s < input.request.duration.s
}

cap_reasons contains {"source": "terms", "rule": frequency_rule, "text": msg} if {
	f := [x | some x in frequency_caps; rate(x) == slowest][0]
	f.source == "terms"
	frequency_rule := f.rule
	msg := sprintf("Your rule %d limits how often the firm may fetch your data to %s.", [f.rule, f.text])
}

reasons := [x | some x in whole_denies] if {
	count(whole_denies) > 0
} else := array.concat(
	[x | some x in rule_reasons],
	array.concat(
		[x | some x in condition_reasons],
		array.concat([x | some x in special_reasons], array.concat([x | some x in default_reasons], [x | some x in cap_reasons])),
	),
)

decision := {
	"effect": effect,
	"scope": scope,
	"reasons": reasons,
	"rules": sort({v.rule | some v in verdicts; v.rule != null}),
}
