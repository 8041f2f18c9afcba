package consent.v1_test

import data.consent.v1.decision
import data.fixtures

allow_marketing := fixtures.rule(1, "allow", {"purposes": ["Marketing"]})

test_no_terms_asks if {
	d := decision with input as fixtures.consent_input([], fixtures.request(["EmailAddress"], "Marketing"))
	d.effect == "ask"
	d.scope.categories == ["EmailAddress"]
	d.rules == []
	d.reasons == [{"source": "terms", "text": "None of your rules covers Email address for marketing by this firm, so you are asked."}]
}

test_parent_purpose_covers_child if {
	d := decision with input as fixtures.consent_input([allow_marketing], fixtures.request(["EmailAddress"], "DirectMarketing"))
	d.effect == "allow"
	d.rules == [1]
	d.reasons[0] == {"source": "terms", "rule": 1, "text": "Your rule 1 allows what rule 1 covers."}
}

test_child_purpose_does_not_cover_parent if {
	r := fixtures.rule(1, "allow", {"purposes": ["DirectMarketing"]})
	d := decision with input as fixtures.consent_input([r], fixtures.request(["EmailAddress"], "Marketing"))
	d.effect == "ask"
}

test_parent_category_covers_child if {
	r := fixtures.rule(1, "allow", {"categories": ["Contact"]})
	d := decision with input as fixtures.consent_input([r], fixtures.request(["EmailAddress", "TelephoneNumber"], "Marketing"))
	d.effect == "allow"
	d.scope.categories == ["EmailAddress", "TelephoneNumber"]
}

test_deny_overrides_earlier_allow if {
	deny := fixtures.rule(2, "deny", {"purposes": ["DirectMarketing"]})
	d := decision with input as fixtures.consent_input([allow_marketing, deny], fixtures.request(["EmailAddress"], "DirectMarketing"))
	d.effect == "deny"
	d.scope == null
	d.reasons == [{"source": "terms", "rule": 2, "text": "Your rule 2 refuses what rule 2 covers."}]
}

test_deny_of_child_refuses_parent_request if {
	deny := fixtures.rule(2, "deny", {"categories": ["EmailAddress"]})
	d := decision with input as fixtures.consent_input([allow_marketing, deny], fixtures.request(["Contact"], "Marketing"))
	d.effect == "deny"
}

test_deny_narrows_categories if {
	deny := fixtures.rule(2, "deny", {"categories": ["Location"]})
	d := decision with input as fixtures.consent_input([allow_marketing, deny], fixtures.request(["Location", "EmailAddress"], "Marketing"))
	d.effect == "allow"
	d.scope.categories == ["EmailAddress"]
	d.rules == [1, 2]
}

test_first_allow_or_ask_decides if {
	ask := fixtures.rule(1, "ask", {"purposes": ["DirectMarketing"]})
	allow := fixtures.rule(2, "allow", {"purposes": ["Marketing"]})
	d := decision with input as fixtures.consent_input([ask, allow], fixtures.request(["EmailAddress"], "DirectMarketing"))
	d.effect == "ask"
	d.reasons == [{"source": "terms", "rule": 1, "text": "Your rule 1 asks you first about what rule 1 covers."}]
}

test_ask_of_child_purpose_asks_for_parent if {
	ask := fixtures.rule(1, "ask", {"purposes": ["DirectMarketing"]})
	d := decision with input as fixtures.consent_input([ask], fixtures.request(["EmailAddress"], "Marketing"))
	d.effect == "ask"
	d.rules == [1]
}

test_mixed_ask_and_allow_asks if {
	allow := fixtures.rule(1, "allow", {"categories": ["Contact"]})
	d := decision with input as fixtures.consent_input([allow], fixtures.request(["EmailAddress", "Age"], "Marketing"))
	d.effect == "ask"
	d.scope.categories == ["Age", "EmailAddress"]
}

test_special_category_needs_ask if {
	d := decision with input as fixtures.consent_input([allow_marketing], fixtures.request(["Health", "EmailAddress"], "Marketing"))
	d.effect == "ask"
	d.scope.categories == ["EmailAddress", "Health"]
	{"source": "regulation", "text": "Health is a special category of personal data: the law requires you to answer each request for it yourself."} in d.reasons
}

test_minor_cannot_share_for_marketing if {
	inp := object.union(fixtures.consent_input([allow_marketing], fixtures.request(["EmailAddress"], "DirectMarketing")), {"customer": {"jurisdiction": "GB", "minor": true}})
	d := decision with input as inp
	d.effect == "deny"
	d.scope == null
	d.reasons == [{"source": "regulation", "text": "The law does not allow sharing data for marketing by someone under the age of digital consent."}]
}

test_minor_may_share_for_service if {
	allow := fixtures.rule(1, "allow", {})
	inp := object.union(fixtures.consent_input([allow], fixtures.request(["EmailAddress"], "CustomerCare")), {"customer": {"jurisdiction": "GB", "minor": true}})
	d := decision with input as inp
	d.effect == "allow"
}

test_cross_border_refused if {
	inp := object.union(fixtures.consent_input([allow_marketing], fixtures.request(["EmailAddress"], "Marketing")), {"firm": {"jurisdiction": "US"}})
	d := decision with input as inp
	d.effect == "deny"
	d.reasons == [{"source": "regulation", "text": "The law does not allow your data to be sent from GB to a firm in US."}]
}

test_suspended_firm_refused if {
	inp := object.union(fixtures.consent_input([allow_marketing], fixtures.request(["EmailAddress"], "Marketing")), {"firm": {"status": "suspended"}})
	d := decision with input as inp
	d.effect == "deny"
	d.reasons == [{"source": "firm", "text": "This firm is not approved to ask for data at the moment."}]
}

test_rule_caps_duration if {
	r := fixtures.rule(1, "allow", {"purposes": ["Marketing"], "max_duration": fixtures.days(90)})
	d := decision with input as fixtures.consent_input([r], fixtures.request(["EmailAddress"], "Marketing"))
	d.scope.duration == "P90D"
	{"source": "terms", "rule": 1, "text": "The firm asked for 365 days; your rule 1 limits it to 90 days."} in d.reasons
}

test_regulation_caps_duration if {
	req := object.union(fixtures.request(["EmailAddress"], "DirectMarketing"), {"duration": fixtures.days(500)})
	d := decision with input as fixtures.consent_input([allow_marketing], req)
	d.scope.duration == "P365D"
	{"source": "regulation", "text": "The law allows consent for marketing to last at most 365 days."} in d.reasons
}

test_shorter_request_kept if {
	req := object.union(fixtures.request(["EmailAddress"], "Marketing"), {"duration": fixtures.days(7)})
	d := decision with input as fixtures.consent_input([allow_marketing], req)
	d.scope.duration == "P7D"
	count(d.reasons) == 1
}

test_rule_caps_frequency if {
	r := fixtures.rule(1, "allow", {"max_frequency": fixtures.per_day(2)})
	req := object.union(fixtures.request(["EmailAddress"], "Marketing"), {"frequency": fixtures.per_day(10)})
	d := decision with input as fixtures.consent_input([r], req)
	d.scope.frequency == {"max": 2, "per": "P1D"}
	{"source": "terms", "rule": 1, "text": "Your rule 1 limits how often the firm may fetch your data to 2 times a day."} in d.reasons
}

test_slower_request_frequency_kept if {
	r := fixtures.rule(1, "allow", {"max_frequency": fixtures.per_day(20)})
	req := object.union(fixtures.request(["EmailAddress"], "Marketing"), {"frequency": fixtures.per_day(10)})
	d := decision with input as fixtures.consent_input([r], req)
	d.scope.frequency == {"max": 10, "per": "P1D"}
}

test_unbounded_frequency if {
	d := decision with input as fixtures.consent_input([allow_marketing], fixtures.request(["EmailAddress"], "Marketing"))
	d.scope.frequency == {"max": 0, "per": ""}
}

test_fields_kept_for_kept_categories if {
	deny := fixtures.rule(2, "deny", {"categories": ["Location"]})
	req := object.union(fixtures.request(["EmailAddress", "Location"], "Marketing"), {"fields": {"EmailAddress": ["primary"], "Location": ["city"]}})
	d := decision with input as fixtures.consent_input([allow_marketing, deny], req)
	d.scope.fields == {"EmailAddress": ["primary"]}
}

test_onward_transfer_condition if {
	r := fixtures.rule(1, "allow", {"no_onward_transfer": true})
	req := object.union(fixtures.request(["EmailAddress"], "Marketing"), {"onward_transfer": true})
	d := decision with input as fixtures.consent_input([r], req)
	d.effect == "ask"
	{"source": "terms", "rule": 1, "text": "Your rule 1 allows this only if the firm does not pass your data on to others, and this firm wants to."} in d.reasons
	ok := decision with input as fixtures.consent_input([r], fixtures.request(["EmailAddress"], "Marketing"))
	ok.effect == "allow"
}

test_retention_condition if {
	r := fixtures.rule(1, "allow", {"max_retention": fixtures.days(30)})
	unsaid := decision with input as fixtures.consent_input([r], fixtures.request(["EmailAddress"], "Marketing"))
	unsaid.effect == "ask"
	{"source": "terms", "rule": 1, "text": "Your rule 1 allows this only if the firm keeps your data for at most 30 days, and this firm does not say how long it keeps it."} in unsaid.reasons
	long := decision with input as fixtures.consent_input([r], object.union(fixtures.request(["EmailAddress"], "Marketing"), {"retention": fixtures.days(60)}))
	long.effect == "ask"
	{"source": "terms", "rule": 1, "text": "Your rule 1 allows this only if the firm keeps your data for at most 30 days, and this firm wants to keep it for 60 days."} in long.reasons
	short := decision with input as fixtures.consent_input([r], object.union(fixtures.request(["EmailAddress"], "Marketing"), {"retention": fixtures.days(10)}))
	short.effect == "allow"
}

test_compensation_condition if {
	r := fixtures.rule(1, "allow", {"min_compensation": fixtures.gbp(500)})
	none := decision with input as fixtures.consent_input([r], fixtures.request(["EmailAddress"], "Marketing"))
	none.effect == "ask"
	{"source": "terms", "rule": 1, "text": "Your rule 1 asks for at least 500 pence, and this request offers nothing."} in none.reasons
	low := decision with input as fixtures.consent_input([r], object.union(fixtures.request(["EmailAddress"], "Marketing"), {"compensation": fixtures.gbp(100)}))
	low.effect == "ask"
	{"source": "terms", "rule": 1, "text": "Your rule 1 asks for at least 500 pence, and this request offers 100 pence."} in low.reasons
	euros := {"currency": "EUR", "minor": 900, "text": "9.00 EUR"}
	other := decision with input as fixtures.consent_input([r], object.union(fixtures.request(["EmailAddress"], "Marketing"), {"compensation": euros}))
	other.effect == "ask"
	enough := decision with input as fixtures.consent_input([r], object.union(fixtures.request(["EmailAddress"], "Marketing"), {"compensation": fixtures.gbp(500)}))
	enough.effect == "allow"
}

test_validity_window if {
	future := fixtures.rule(1, "allow", {"from_ns": fixtures.now + 1})
	d1 := decision with input as fixtures.consent_input([future], fixtures.request(["EmailAddress"], "Marketing"))
	d1.effect == "ask"
	starts_now := fixtures.rule(1, "allow", {"from_ns": fixtures.now})
	d2 := decision with input as fixtures.consent_input([starts_now], fixtures.request(["EmailAddress"], "Marketing"))
	d2.effect == "allow"
	ended := fixtures.rule(1, "allow", {"until_ns": fixtures.now})
	d3 := decision with input as fixtures.consent_input([ended], fixtures.request(["EmailAddress"], "Marketing"))
	d3.effect == "ask"
}

test_firm_sector_and_jurisdiction_match if {
	by_firm := fixtures.rule(1, "allow", {"firms": ["firm_a"]})
	d1 := decision with input as fixtures.consent_input([by_firm], fixtures.request(["Age"], "Marketing"))
	d1.effect == "allow"
	other_firm := fixtures.rule(1, "allow", {"firms": ["firm_b"]})
	d2 := decision with input as fixtures.consent_input([other_firm], fixtures.request(["Age"], "Marketing"))
	d2.effect == "ask"
	media := fixtures.rule(1, "allow", {"sectors": ["media"]})
	d3 := decision with input as fixtures.consent_input([media], fixtures.request(["Age"], "Marketing"))
	d3.effect == "ask"
	de := fixtures.rule(1, "allow", {"jurisdictions": ["DE"]})
	d4 := decision with input as fixtures.consent_input([de], fixtures.request(["Age"], "Marketing"))
	d4.effect == "ask"
}

test_every_category_refused_is_deny if {
	deny := fixtures.rule(1, "deny", {"categories": ["Contact"]})
	d := decision with input as fixtures.consent_input([deny], fixtures.request(["EmailAddress", "TelephoneNumber"], "Marketing"))
	d.effect == "deny"
	d.rules == [1]
}
