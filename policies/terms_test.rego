package terms.v1_test

import data.fixtures
import data.terms.v1 as terms

verdicts(rules, categories) := v if {
	v := terms.verdicts with input as fixtures.consent_input(rules, fixtures.request(categories, "DirectMarketing"))
}

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

test_any_deny_wins if {
	rules := [fixtures.rule(1, "allow", {}), fixtures.rule(2, "ask", {}), fixtures.rule(3, "deny", {"categories": ["EmailAddress"]})]
	v := verdicts(rules, ["EmailAddress", "Age"])
	v == {"EmailAddress": {"effect": "deny", "rule": 3}, "Age": {"effect": "allow", "rule": 1}}
}

test_first_allow_or_ask_decides if {
	rules := [fixtures.rule(1, "ask", {"sectors": ["media"]}), fixtures.rule(2, "allow", {}), fixtures.rule(3, "ask", {})]
	verdicts(rules, ["EmailAddress"]) == {"EmailAddress": {"effect": "allow", "rule": 2}}
}

test_no_rule_asks if {
	verdicts([], ["EmailAddress"]) == {"EmailAddress": {"effect": "ask", "rule": null}}
}

test_unknown_names_match_nothing if {
	rules := [fixtures.rule(1, "allow", {"categories": ["NoSuchCategory"]}), fixtures.rule(2, "deny", {"purposes": ["NoSuchPurpose"]})]
	verdicts(rules, ["EmailAddress"]) == {"EmailAddress": {"effect": "ask", "rule": null}}
}

test_allow_needs_cover_deny_needs_touch if {
	allow_child := fixtures.rule(1, "allow", {"categories": ["EmailAddress"]})
	verdicts([allow_child], ["Contact"]) == {"Contact": {"effect": "ask", "rule": null}}
	deny_child := fixtures.rule(1, "deny", {"categories": ["EmailAddress"]})
	verdicts([deny_child], ["Contact"]) == {"Contact": {"effect": "deny", "rule": 1}}
	ask_child_purpose := fixtures.rule(1, "ask", {"purposes": ["PersonalisedAdvertising"]})
	v := terms.verdicts with input as fixtures.consent_input([ask_child_purpose], fixtures.request(["Age"], "Marketing"))
	v == {"Age": {"effect": "ask", "rule": 1}}
}

test_unmet_lists_every_condition if {
	r := fixtures.rule(1, "allow", {"no_onward_transfer": true, "max_retention": fixtures.days(30), "min_compensation": fixtures.gbp(100)})
	req := object.union(fixtures.request(["EmailAddress"], "Marketing"), {"onward_transfer": true})
	u := terms.unmet with input as fixtures.consent_input([r], req)
	count(u[1]) == 3
	none := terms.unmet with input as fixtures.consent_input([fixtures.rule(1, "allow", {})], req)
	none == {1: []}
}

test_category_labels if {
	terms.category_labels(["EmailAddress", "Age"]) == "Email address, Age"
}
