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

rule(n, effect, match) := object.union(
	{
		"n": n, "effect": effect,
		"firms": [], "sectors": [], "jurisdictions": [], "categories": [], "purposes": [],
		"max_duration": null, "max_retention": null, "max_frequency": null,
		"no_onward_transfer": false, "min_compensation": null,
		"from_ns": -9223372036854775808, "until_ns": 9223372036854775807,
		"what": sprintf("what rule %d covers", [n]),
	},
	match,
)

request(categories, purpose) := {
	"categories": categories, "fields": {}, "purpose": purpose,
	"duration": days(365), "frequency": no_frequency, "retention": no_duration,
	"onward_transfer": false, "compensation": null,
}

consent_input(rules, req) := {
	"version": 1, "now_ns": now, "customer": customer, "firm": firm,
	"request": req, "terms": {"hash": "sha256:test", "rules": rules},
}

# A live consent granted for Contact and PurchasesAndSpendingHabit for
# Marketing, decided a day before now, expiring in 30 days.
granted := {
	"id": "con_a", "firm_id": "firm_a", "state": "granted", "explicit": true,
	"scope": {"categories": ["Contact", "PurchasesAndSpendingHabit"], "fields": {}, "purpose": "Marketing", "frequency": no_frequency},
	"decided_at_ns": now - (86400 * 1000000000), "expires_at_ns": now + ((30 * 86400) * 1000000000),
	"decided_text": "1 March 2026", "expires_text": "31 March 2026",
}

access_input(rules, consent, categories, purpose) := {
	"version": 1, "now_ns": now, "customer": customer, "firm": firm,
	"request": {"categories": categories, "fields": {}, "purpose": purpose},
	"consent": consent, "terms": {"hash": "sha256:test", "rules": rules}, "counts": {},
}
