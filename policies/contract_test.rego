package contract.v1_test

import data.consent.v1
import data.contract.v1 as contract
import data.fixtures

inp := fixtures.consent_input([fixtures.rule(1, "allow", {})], fixtures.request(["EmailAddress"], "ServiceProvision"))

test_builtin_regulation_is_well_formed if {
	not contract.regulation_broken with input as inp
	d := v1.decision with input as inp
	d.effect == "allow"
}

test_malformed_deny_refuses if {
	contract.regulation_broken with input as inp with data.regulatory.v1.deny as {"not an object"}
	d := v1.decision with input as inp with data.regulatory.v1.deny as {{"reason": "no text"}}
	d.effect == "deny"
	d.reasons == [contract.refusal]
}

test_malformed_ask_required_refuses if {
	contract.regulation_broken with input as inp with data.regulatory.v1.ask_required as {{"text": "no category"}}
	contract.regulation_broken with input as inp with data.regulatory.v1.ask_required as {{"category": "Health"}}
}

test_malformed_duration_cap_refuses if {
	contract.regulation_broken with input as inp with data.regulatory.v1.duration_caps as {{"s": 0, "iso": "P0D", "text": "x"}}
	contract.regulation_broken with input as inp with data.regulatory.v1.duration_caps as {{"s": "ten", "iso": "P10D", "text": "x"}}
}

test_not_a_set_refuses if {
	contract.regulation_broken with input as inp with data.regulatory.v1.deny as ["a list"]
}

test_missing_output_refuses if {
	not contract.outputs_defined with data.regulatory.v1.deny as "not a set"
}
