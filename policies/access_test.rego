package access.v1_test

import data.access.v1.decision
import data.fixtures

allow_marketing := fixtures.rule(1, "allow", {"purposes": ["Marketing"]})

access(consent, categories, purpose) := fixtures.access_input([allow_marketing], consent, categories, purpose)

decide(inp) := d if {
	d := decision with input as inp
}

only_reason(d, reason) if {
	d.effect == "deny"
	d.scope == null
	d.reasons == [reason]
}

test_live_consent_allows if {
	d := decision with input as access(fixtures.granted, ["EmailAddress"], "DirectMarketing")
	d.effect == "allow"
	d.scope == {"categories": ["EmailAddress"], "fields": {}, "purpose": "DirectMarketing"}
	d.rules == [1]
	d.reasons == [{"source": "consent", "text": "You agreed on 1 March 2026 to share Contact details, Purchase history for marketing with this firm until 31 March 2026."}]
}

test_revoked_consent_refused if {
	d := decision with input as access(object.union(fixtures.granted, {"state": "revoked"}), ["Contact"], "Marketing")
	only_reason(d, {"source": "consent", "text": "This consent is revoked, so nothing may be shared under it."})
}

test_expiry_boundary if {
	at_expiry := object.union(fixtures.granted, {"expires_at_ns": fixtures.now})
	d := decision with input as access(at_expiry, ["Contact"], "Marketing")
	only_reason(d, {"source": "consent", "text": "This consent expired on 31 March 2026."})
	just_before := object.union(fixtures.granted, {"expires_at_ns": fixtures.now + 1})
	ok := decision with input as access(just_before, ["Contact"], "Marketing")
	ok.effect == "allow"
}

test_other_firms_consent_refused if {
	d := decision with input as access(object.union(fixtures.granted, {"firm_id": "firm_b"}), ["Contact"], "Marketing")
	only_reason(d, {"source": "consent", "text": "This consent was given to a different firm."})
}

test_suspended_firm_refused if {
	inp := object.union(access(fixtures.granted, ["Contact"], "Marketing"), {"firm": {"status": "suspended"}})
	d := decision with input as inp
	only_reason(d, {"source": "firm", "text": "This firm's account is suspended, so it may not receive data."})
}

test_pending_firm_refused if {
	inp := object.union(access(fixtures.granted, ["Contact"], "Marketing"), {"firm": {"status": "pending"}})
	d := decision with input as inp
	only_reason(d, {"source": "firm", "text": "This firm is not yet approved to receive data."})
}

test_category_outside_scope_refused if {
	d := decision with input as access(fixtures.granted, ["Age"], "Marketing")
	only_reason(d, {"source": "consent", "text": "You did not agree to share Age with this firm."})
}

test_fields_within_scope if {
	restricted := object.union(fixtures.granted, {"scope": {"fields": {"Contact": ["email"]}}})
	ok := object.union(access(restricted, ["Contact"], "Marketing"), {"request": {"fields": {"Contact": ["email"]}}})
	decide(ok).effect == "allow"
	extra := object.union(access(restricted, ["Contact"], "Marketing"), {"request": {"fields": {"Contact": ["email", "phone"]}}})
	only_reason(decide(extra), {"source": "consent", "text": "You agreed to share only email of your contact details, not phone."})
	whole := access(restricted, ["Contact"], "Marketing")
	only_reason(decide(whole), {"source": "consent", "text": "You agreed to share only email of your contact details, not all of it."})
	child := access(restricted, ["EmailAddress"], "Marketing")
	only_reason(decide(child), {"source": "consent", "text": "You did not agree to share Email address with this firm."})
}

test_purpose_must_match if {
	d := decision with input as access(fixtures.granted, ["Contact"], "AcademicResearch")
	only_reason(d, {"source": "consent", "text": "You agreed to share for marketing, not for academic research."})
}

test_consent_frequency_limit if {
	limited := object.union(fixtures.granted, {"scope": {"frequency": fixtures.per_day(3)}})
	under := object.union(access(limited, ["Contact"], "Marketing"), {"counts": {"P1D": 2}})
	decide(under).effect == "allow"
	reached := object.union(access(limited, ["Contact"], "Marketing"), {"counts": {"P1D": 3}})
	only_reason(decide(reached), {"source": "consent", "text": "This firm has reached the limit you agreed to: at most 3 times a day."})
	unknown := access(limited, ["Contact"], "Marketing")
	only_reason(decide(unknown), {"source": "consent", "text": "Steward could not count this firm's earlier requests, so it refuses to be safe."})
}

test_current_terms_frequency_limit if {
	r := fixtures.rule(1, "allow", {"max_frequency": fixtures.per_day(5)})
	inp := object.union(fixtures.access_input([r], fixtures.granted, ["Contact"], "Marketing"), {"counts": {"P1D": 5}})
	only_reason(decide(inp), {"source": "terms", "rule": 1, "text": "Your rule 1 lets a firm fetch your data at most 5 times a day, and this firm has reached that."})
}

test_stricter_current_terms_win if {
	deny := fixtures.rule(2, "deny", {"categories": ["PurchasesAndSpendingHabit"]})
	inp := fixtures.access_input([allow_marketing, deny], fixtures.granted, ["PurchasesAndSpendingHabit"], "Marketing")
	only_reason(decide(inp), {"source": "terms", "rule": 2, "text": "Your current rule 2 refuses what rule 2 covers."})
	other := fixtures.access_input([allow_marketing, deny], fixtures.granted, ["EmailAddress"], "Marketing")
	decide(other).effect == "allow"
}

test_current_max_duration_ends_consent if {
	short := fixtures.rule(1, "allow", {"max_duration": fixtures.days(1)})
	inp := fixtures.access_input([short], fixtures.granted, ["Contact"], "Marketing")
	only_reason(decide(inp), {"source": "terms", "rule": 1, "text": "Your current rule 1 allows this for at most 1 days, and this consent is older than that."})
	long := fixtures.rule(1, "allow", {"max_duration": fixtures.days(2)})
	decide(fixtures.access_input([long], fixtures.granted, ["Contact"], "Marketing")).effect == "allow"
}

test_automatic_consent_stops_when_terms_ask if {
	automatic := object.union(fixtures.granted, {"explicit": false})
	inp := fixtures.access_input([], automatic, ["Contact"], "Marketing")
	only_reason(decide(inp), {"source": "terms", "text": "Your current terms ask you first about Contact details; this consent was given automatically, so the firm must ask again."})
	answered := fixtures.access_input([], fixtures.granted, ["Contact"], "Marketing")
	decide(answered).effect == "allow"
	still_allowed := fixtures.access_input([allow_marketing], automatic, ["Contact"], "Marketing")
	decide(still_allowed).effect == "allow"
}

test_special_category_needs_explicit_consent if {
	health := object.union(fixtures.granted, {"explicit": false, "scope": {"categories": ["Health"]}})
	inp := fixtures.access_input([allow_marketing], health, ["Health"], "Marketing")
	only_reason(decide(inp), {"source": "regulation", "text": "Health is a special category of personal data: the law requires you to answer each request for it yourself."})
	answered := object.union(health, {"explicit": true})
	decide(fixtures.access_input([allow_marketing], answered, ["Health"], "Marketing")).effect == "allow"
}

test_minor_refused_at_access if {
	inp := object.union(access(fixtures.granted, ["Contact"], "Marketing"), {"customer": {"minor": true}})
	only_reason(decide(inp), {"source": "regulation", "text": "The law does not allow sharing data for marketing by someone under the age of digital consent."})
}

test_regulatory_duration_cap_at_access if {
	old := object.union(fixtures.granted, {"decided_at_ns": fixtures.now - ((366 * 86400) * 1000000000)})
	inp := access(old, ["Contact"], "Marketing")
	only_reason(decide(inp), {"source": "regulation", "text": "The law allows consent for marketing to last at most 365 days."})
}

test_unknown_names_still_refused if {
	unknown_category := access(fixtures.granted, ["Shoes"], "Marketing")
	only_reason(decide(unknown_category), {"source": "consent", "text": "You did not agree to share Shoes with this firm."})
	unknown_purpose := access(fixtures.granted, ["Contact"], "Mischief")
	only_reason(decide(unknown_purpose), {"source": "consent", "text": "You agreed to share for marketing, not for mischief."})
}

test_unconfirmed_is_refused if {
	# No refusal is found (the deny rules are mocked away), but the
	# positive checks fail: still a deny.
	inp := access(object.union(fixtures.granted, {"state": "revoked"}), ["Contact"], "Marketing")
	d := decision with input as inp with data.access.v1.deny as set()
	only_reason(d, {"source": "consent", "text": "Steward could not confirm that this disclosure is allowed, so it refuses to be safe."})
}

test_broken_regulation_refused if {
	inp := access(fixtures.granted, ["Contact"], "Marketing")
	d := decide(inp) with data.regulatory.v1.deny as {"not an object"}
	d.effect == "deny"
	{"source": "regulation", "text": "Steward could not apply the regulator's rules to this request, so it refuses to be safe."} in d.reasons
}

test_plan_summarises_limits_and_ends if {
	limited := object.union(fixtures.granted, {"scope": {"frequency": fixtures.per_day(3)}})
	r := fixtures.rule(1, "allow", {"max_frequency": fixtures.per_day(5), "max_duration": fixtures.days(2)})
	p := data.access.v1.plan with input as fixtures.access_input([r], limited, ["Contact"], "Marketing")
	p.caps == {"P1D": 3}
	p.until_ns == limited.decided_at_ns + ((2 * 86400) * 1000000000)
	p.clear == true
	p.refusals == set()
}

test_non_number_count_refused if {
	limited := object.union(fixtures.granted, {"scope": {"frequency": fixtures.per_day(3)}})
	inp := object.union(access(limited, ["Contact"], "Marketing"), {"counts": {"P1D": "2"}})
	d := decide(inp)
	d.effect == "deny"
	{"source": "consent", "text": "Steward could not count this firm's earlier requests, so it refuses to be safe."} in d.reasons
}

# broker/policy evaluates the plan once and passes it in: the decision is
# the same as when it is computed in place.
test_passed_plan_gives_the_same_decision if {
	every inp in [
		access(fixtures.granted, ["EmailAddress"], "DirectMarketing"),
		access(object.union(fixtures.granted, {"state": "revoked"}), ["Contact"], "Marketing"),
		access(fixtures.granted, ["Age"], "Marketing"),
		object.union(access(fixtures.granted, ["Contact"], "Marketing"), {"now_ns": fixtures.granted.expires_at_ns}),
	] {
		p := data.access.v1.plan with input as inp
		passed := decision with input as inp with data.access.v1.plan as p
		passed == decide(inp)
	}
}
