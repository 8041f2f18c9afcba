package regulatory.v1_test

import data.fixtures
import data.regulatory.v1 as regulatory

base := fixtures.consent_input([], fixtures.request(["EmailAddress"], "Marketing"))

with_parties(customer_j, firm_j) := object.union(base, {"customer": {"jurisdiction": customer_j}, "firm": {"jurisdiction": firm_j}})

test_same_jurisdiction_allowed if {
	regulatory.transfer_allowed with input as with_parties("US", "US")
}

test_free_flow_area_allowed if {
	regulatory.transfer_allowed with input as with_parties("DE", "GB")
	regulatory.transfer_allowed with input as with_parties("GB", "JP")
}

test_outside_free_flow_refused if {
	not regulatory.transfer_allowed with input as with_parties("DE", "US")
	not regulatory.transfer_allowed with input as with_parties("US", "DE")
	count(regulatory.deny) == 1 with input as with_parties("DE", "US")
}

test_special_categories_need_ask if {
	inp := object.union(base, {"request": {"categories": ["Health", "Biometric", "Religion", "PoliticalOpinion", "SexualOrientation", "EmailAddress"]}})
	cats := {x.category | some x in regulatory.ask_required} with input as inp
	cats == {"Health", "Biometric", "Religion", "PoliticalOpinion", "SexualOrientation"}
}

test_duration_caps_inherit_from_parent_purpose if {
	inp := object.union(base, {"request": {"purpose": "PersonalisedAdvertising"}})
	caps := regulatory.duration_caps with input as inp
	caps == {{"s": 365 * 86400, "iso": "P365D", "text": "The law allows consent for marketing to last at most 365 days."}}
}

test_no_cap_for_uncapped_purpose if {
	inp := object.union(base, {"request": {"purpose": "LegalCompliance"}})
	count(regulatory.duration_caps) == 0 with input as inp
}

test_minor_rule_only_for_marketing if {
	minor := object.union(base, {"customer": {"minor": true}})
	count(regulatory.deny) == 1 with input as minor
	research := object.union(minor, {"request": {"purpose": "AcademicResearch"}})
	count(regulatory.deny) == 0 with input as research
}
