package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/stewardhq/steward/broker"
)

// Words for people: the phrases the policies put into reasons. Built in Go
// once per terms version (or per request for the consent summary), so the
// Rego only fills them into sentences.

func durationText(d broker.Duration) string {
	var parts []string
	add := func(n int, unit string) {
		switch {
		case n == 1:
			parts = append(parts, "1 "+unit)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", n, unit))
		}
	}
	add(d.Years, "year")
	add(d.Months, "month")
	add(d.Weeks, "week")
	add(d.Days, "day")
	add(d.Hours, "hour")
	add(d.Minutes, "minute")
	add(d.Seconds, "second")
	return joinWords(parts, "and")
}

func frequencyText(f broker.Frequency) string {
	times := fmt.Sprintf("%d times", f.Max)
	switch f.Max {
	case 1:
		times = "once"
	case 2:
		times = "twice"
	}
	per := "every " + durationText(f.Per)
	switch f.Per {
	case broker.Duration{Hours: 1}:
		per = "an hour"
	case broker.Duration{Days: 1}:
		per = "a day"
	case broker.Duration{Weeks: 1}, broker.Duration{Days: 7}:
		per = "a week"
	case broker.Duration{Months: 1}:
		per = "a month"
	case broker.Duration{Years: 1}:
		per = "a year"
	}
	return times + " " + per
}

func joinWords(parts []string, conj string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " " + conj + " " + parts[len(parts)-1]
}

func labels(names []string, entries map[string]taxonomyEntry) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if e, ok := entries[n]; ok {
			out[i] = strings.ToLower(e.Label)
		}
	}
	return out
}

// whatText says what a rule covers: "sharing contact details for marketing
// with retail firms".
func whatText(m broker.TermsMatch, tax *taxonomyData) string {
	what := "sharing any of your data"
	if len(m.Categories) > 0 {
		what = "sharing your " + joinWords(labels(m.Categories, tax.Categories), "and")
	}
	why := "for any purpose"
	if len(m.Purposes) > 0 {
		why = "for " + joinWords(labels(m.Purposes, tax.Purposes), "or")
	}
	var who string
	switch {
	case len(m.Firms) == 1:
		who = "with one firm you named"
	case len(m.Firms) > 1:
		who = fmt.Sprintf("with %d firms you named", len(m.Firms))
	case len(m.Sectors) > 0:
		who = "with " + joinWords(m.Sectors, "or") + " firms"
	default:
		who = "with any firm"
	}
	if len(m.Jurisdictions) > 0 {
		who += " in " + joinWords(m.Jurisdictions, "or")
	}
	return what + " " + why + " " + who
}

// scopeText says what a consent covers: "Contact details, Purchase history
// for marketing".
func scopeText(s broker.Scope, tax *taxonomyData) string {
	cats := make([]string, len(s.Categories))
	for i, c := range s.Categories {
		cats[i] = c
		if e, ok := tax.Categories[c]; ok {
			cats[i] = e.Label
		}
	}
	purpose := s.Purpose
	if e, ok := tax.Purposes[purpose]; ok {
		purpose = strings.ToLower(e.Label)
	}
	return strings.Join(cats, ", ") + " for " + purpose
}

func dateText(t time.Time) string { return t.UTC().Format("2 January 2006 at 15:04 UTC") }
