# Package fixtures builds inputs for the policy tests (input version 1, as
# broker/policy builds them). It lives in a _test.rego file, so it is never
# part of the policy itself.
package fixtures

now := 1000000000000

firm := {"id": "firm_a", "sector": "retail", "jurisdiction": "GB", "status": "approved"}

customer := {"jurisdiction": "GB", "minor": false}

days(n) := {"iso": sprintf("P%dD", [n]), "s": n * 86400, "text": sprintf("%d days", [n])}

no_duration := {"iso": "", "s": 0, "text": ""}

no_frequency := {"max": 0, "per": "", "per_s": 0, "text": ""}

per_day(n) := {"max": n, "per": "P1D", "per_s": 86400, "text": sprintf("%d times a day", [n])}

gbp(minor) := {"currency": "GBP", "minor": minor, "text": sprintf("%d pence", [minor])}

# rule(n, effect, overrides) is rule n as broker/policy gives it to the
# policy: its fields, overridden, plus the expansions terms.rego relies on.
rule(n, effect, overrides) := object.union(r, expansions(r)) if {
	r := object.union(
		{
			"n": n, "effect": effect,
			"firms": [], "sectors": [], "jurisdictions": [], "categories": [], "purposes": [],
			"max_duration": null, "max_retention": null, "max_frequency": null,
			"no_onward_transfer": false, "min_compensation": null,
			"from_ns": -9223372036854775808, "until_ns": 9223372036854775807,
			"what": sprintf("what rule %d covers", [n]),
		},
		overrides,
	)
}

expansions(r) := {
	"cover_categories": cover(r.categories, data.taxonomy.categories),
	"touch_categories": touch(r.categories, data.taxonomy.categories),
	"any_category": count(r.categories) == 0,
	"firm_set": {f: true | some f in r.firms}, "any_firm": count(r.firms) == 0,
	"sector_set": {s: true | some s in r.sectors}, "any_sector": count(r.sectors) == 0,
	"jurisdiction_set": {j: true | some j in r.jurisdictions}, "any_jurisdiction": count(r.jurisdictions) == 0,
}

# cover: the names and everything under them; touch: that and everything above.
cover(names, entries) := {x: true | some x, e in entries; some name in names; e.ancestors[name]}

touch(names, entries) := object.union(cover(names, entries), {a: true | some name in names; some a, _ in entries[name].ancestors})

index(rules) := {
	"any_purpose": [r.n | some r in rules; count(r.purposes) == 0],
	"purpose_cover": {p: [r.n | some r in rules; cover(r.purposes, data.taxonomy.purposes)[p]] | some p, _ in data.taxonomy.purposes},
	"purpose_within": {p: [r.n |
		some r in rules
		touch(r.purposes, data.taxonomy.purposes)[p]
		not cover(r.purposes, data.taxonomy.purposes)[p]
	] | some p, _ in data.taxonomy.purposes},
}

request(categories, purpose) := {
	"categories": categories, "fields": {}, "purpose": purpose,
	"duration": days(365), "frequency": no_frequency, "retention": no_duration,
	"onward_transfer": false, "compensation": null,
}

consent_input(rules, req) := {
	"version": 1, "now_ns": now, "customer": customer, "firm": firm,
	"request": req, "terms": {"hash": "sha256:test", "rules": rules, "index": index(rules)},
}

# A live consent granted for Contact and PurchasesAndSpendingHabit for
# Marketing, decided a day before now, expiring in 30 days.
granted := {
	"id": "con_a", "firm_id": "firm_a", "state": "granted", "explicit": true,
	"scope": {"categories": ["Contact", "PurchasesAndSpendingHabit"], "fields": {}, "purpose": "Marketing", "frequency": no_frequency},
	"decided_at_ns": now - (86400 * 1000000000), "expires_at_ns": now + ((30 * 86400) * 1000000000),
	"decided_text": "1 March 2026", "expires_text": "31 March 2026",
	"scope_text": "Contact details, Purchase history for marketing",
}

access_input(rules, consent, categories, purpose) := {
	"version": 1, "now_ns": now, "customer": customer, "firm": firm,
	"request": {"categories": categories, "fields": {}, "purpose": purpose},
	"consent": consent, "terms": {"hash": "sha256:test", "rules": rules, "index": index(rules)}, "counts": {},
}
