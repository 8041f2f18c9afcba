package broker

// The taxonomy of personal-data categories and purposes uses the names of
// the W3C Data Privacy Vocabulary (DPV 2.x: the dpv-pd extension for
// categories, dpv core for purposes) with human labels. Parent links form
// the hierarchy: a rule that allows Marketing covers DirectMarketing.

// Category is a kind of personal data.
type Category struct {
	Name   string `json:"name"`
	Label  string `json:"label"`
	Parent string `json:"parent,omitempty"`
	// Special marks GDPR Art. 9 special categories: they always need the
	// customer's explicit answer, never a standing allow.
	Special bool `json:"special,omitempty"`
}

// Purpose is why a firm wants data.
type Purpose struct {
	Name   string `json:"name"`
	Label  string `json:"label"`
	Parent string `json:"parent,omitempty"`
}

// Categories is the seeded category taxonomy, parents before children.
var Categories = []Category{
	{Name: "Contact", Label: "Contact details"},
	{Name: "EmailAddress", Label: "Email address", Parent: "Contact"},
	{Name: "TelephoneNumber", Label: "Telephone number", Parent: "Contact"},
	{Name: "PhysicalAddress", Label: "Postal address", Parent: "Contact"},
	{Name: "Demographic", Label: "Demographics"},
	{Name: "Age", Label: "Age", Parent: "Demographic"},
	{Name: "Gender", Label: "Gender", Parent: "Demographic"},
	{Name: "HouseholdData", Label: "Household", Parent: "Demographic"},
	{Name: "PurchasesAndSpendingHabit", Label: "Purchase history"},
	{Name: "Preference", Label: "Preferences"},
	{Name: "Interest", Label: "Interests", Parent: "Preference"},
	{Name: "Financial", Label: "Financial summary"},
	{Name: "Income", Label: "Income", Parent: "Financial"},
	{Name: "CreditRecord", Label: "Credit record", Parent: "Financial"},
	{Name: "Location", Label: "Location history"},
	{Name: "Health", Label: "Health", Special: true},
	{Name: "Biometric", Label: "Biometric data", Special: true},
	{Name: "Genetic", Label: "Genetic data", Special: true},
	{Name: "Religion", Label: "Religious belief", Special: true},
	{Name: "PoliticalOpinion", Label: "Political opinion", Special: true},
	{Name: "SexualOrientation", Label: "Sexual orientation", Special: true},
	{Name: "RacialOrEthnicOrigin", Label: "Racial or ethnic origin", Special: true},
	{Name: "TradeUnionMembership", Label: "Trade union membership", Special: true},
}

// Purposes is the seeded purpose taxonomy, parents before children.
var Purposes = []Purpose{
	{Name: "ServiceProvision", Label: "Providing a service you asked for"},
	{Name: "ServicePersonalisation", Label: "Personalising a service", Parent: "ServiceProvision"},
	{Name: "CustomerManagement", Label: "Managing your account", Parent: "ServiceProvision"},
	{Name: "CustomerCare", Label: "Customer care", Parent: "CustomerManagement"},
	{Name: "Marketing", Label: "Marketing"},
	{Name: "DirectMarketing", Label: "Direct marketing", Parent: "Marketing"},
	{Name: "Advertising", Label: "Advertising", Parent: "Marketing"},
	{Name: "PersonalisedAdvertising", Label: "Personalised advertising", Parent: "Advertising"},
	{Name: "ResearchAndDevelopment", Label: "Research and development"},
	{Name: "AcademicResearch", Label: "Academic research", Parent: "ResearchAndDevelopment"},
	{Name: "CommercialResearch", Label: "Commercial research", Parent: "ResearchAndDevelopment"},
	{Name: "EnforceSecurity", Label: "Security"},
	{Name: "FraudPreventionAndDetection", Label: "Fraud prevention", Parent: "EnforceSecurity"},
	{Name: "IdentityVerification", Label: "Identity verification", Parent: "EnforceSecurity"},
	{Name: "LegalCompliance", Label: "Meeting legal obligations"},
	{Name: "CreditChecking", Label: "Credit checking", Parent: "LegalCompliance"},
}

// CategoryByName returns the named category.
func CategoryByName(name string) (Category, bool) {
	for _, c := range Categories {
		if c.Name == name {
			return c, true
		}
	}
	return Category{}, false
}

// PurposeByName returns the named purpose.
func PurposeByName(name string) (Purpose, bool) {
	for _, p := range Purposes {
		if p.Name == name {
			return p, true
		}
	}
	return Purpose{}, false
}

// PurposeCovers reports whether purpose outer is inner or an ancestor of it.
func PurposeCovers(outer, inner string) bool {
	for name := inner; name != ""; {
		if name == outer {
			return true
		}
		p, ok := PurposeByName(name)
		if !ok {
			return false
		}
		name = p.Parent
	}
	return false
}

// CategoryCovers reports whether category outer is inner or an ancestor of it.
func CategoryCovers(outer, inner string) bool {
	for name := inner; name != ""; {
		if name == outer {
			return true
		}
		c, ok := CategoryByName(name)
		if !ok {
			return false
		}
		name = c.Parent
	}
	return false
}
