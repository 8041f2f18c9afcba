package terms.v1_test

import data.fixtures
import data.terms.v1 as terms

ctx := {"firm": fixtures.firm, "purpose": "DirectMarketing", "now_ns": fixtures.now}

test_category_covers_follows_hierarchy if {
	terms.category_covers("Contact", "EmailAddress")
	terms.category_covers("EmailAddress", "EmailAddress")
	not terms.category_covers("EmailAddress", "Contact")
	not terms.category_covers("Contact", "NoSuchCategory")
}

test_purpose_covers_follows_hierarchy if {
	terms.purpose_covers("Marketing", "PersonalisedAdvertising")
	not terms.purpose_covers("Advertising", "DirectMarketing")
}

test_verdict_prefers_any_deny if {
	rules := [fixtures.rule(1, "allow", {}), fixtures.rule(2, "ask", {}), fixtures.rule(3, "deny", {"categories": ["EmailAddress"]})]
	v := terms.verdict(rules, ctx, "EmailAddress")
	v.effect == "deny"
	v.rule.n == 3
}

test_verdict_first_allow_or_ask if {
	rules := [fixtures.rule(1, "ask", {"sectors": ["media"]}), fixtures.rule(2, "allow", {}), fixtures.rule(3, "ask", {})]
	v := terms.verdict(rules, ctx, "EmailAddress")
	v.effect == "allow"
	v.rule.n == 2
}

test_verdict_default_ask if {
	v := terms.verdict([], ctx, "EmailAddress")
	v == {"effect": "ask", "rule": null}
}

test_unmet_lists_every_condition if {
	r := fixtures.rule(1, "allow", {"no_onward_transfer": true, "max_retention": fixtures.days(30), "min_compensation": fixtures.gbp(100)})
	req := object.union(fixtures.request(["EmailAddress"], "Marketing"), {"onward_transfer": true})
	count(terms.unmet(r, req)) == 3
	count(terms.unmet(fixtures.rule(1, "allow", {}), req)) == 0
}

test_category_labels if {
	terms.category_labels(["EmailAddress", "Age"]) == "Email address, Age"
}
