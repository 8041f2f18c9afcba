package policy

import (
	"encoding/json"
	"fmt"

	"github.com/stewardhq/steward/broker"
)

// Taxonomy is the vocabulary the policies match names against. It goes
// into OPA as data.taxonomy, with each name's ancestors precomputed so
// that "Marketing covers DirectMarketing" is a single lookup.
type Taxonomy struct {
	Categories []broker.Category
	Purposes   []broker.Purpose
}

// DefaultTaxonomy is broker.Categories and broker.Purposes.
func DefaultTaxonomy() Taxonomy {
	return Taxonomy{Categories: broker.Categories, Purposes: broker.Purposes}
}

type taxonomyEntry struct {
	Label string `json:"label"`
	// Special is set on a special category, on anything under one, and on
	// anything holding one: asking for it means asking for special data.
	Special   bool            `json:"special,omitempty"`
	Ancestors map[string]bool `json:"ancestors"`
}

type taxonomyData struct {
	Categories map[string]taxonomyEntry `json:"categories"`
	Purposes   map[string]taxonomyEntry `json:"purposes"`
}

// data returns the taxonomy as OPA data, refusing unknown parents and cycles.
func (t Taxonomy) data() (taxonomyData, error) {
	cparent := map[string]string{}
	for _, c := range t.Categories {
		cparent[c.Name] = c.Parent
	}
	pparent := map[string]string{}
	for _, p := range t.Purposes {
		pparent[p.Name] = p.Parent
	}
	d := taxonomyData{Categories: map[string]taxonomyEntry{}, Purposes: map[string]taxonomyEntry{}}
	for _, c := range t.Categories {
		anc, err := ancestors(c.Name, cparent)
		if err != nil {
			return taxonomyData{}, fmt.Errorf("category %w", err)
		}
		d.Categories[c.Name] = taxonomyEntry{Label: c.Label, Ancestors: anc}
	}
	for _, c := range t.Categories {
		if !c.Special {
			continue
		}
		for name, e := range d.Categories {
			if e.Ancestors[c.Name] || d.Categories[c.Name].Ancestors[name] {
				e.Special = true
				d.Categories[name] = e
			}
		}
	}
	for _, p := range t.Purposes {
		anc, err := ancestors(p.Name, pparent)
		if err != nil {
			return taxonomyData{}, fmt.Errorf("purpose %w", err)
		}
		d.Purposes[p.Name] = taxonomyEntry{Label: p.Label, Ancestors: anc}
	}
	return d, nil
}

func ancestors(name string, parent map[string]string) (map[string]bool, error) {
	out := map[string]bool{}
	for n := name; n != ""; n = parent[n] {
		if out[n] {
			return nil, fmt.Errorf("%w: %q has a cycle of parents", broker.ErrInvalid, name)
		}
		if _, ok := parent[n]; !ok {
			return nil, fmt.Errorf("%w: %q has unknown ancestor %q", broker.ErrInvalid, name, n)
		}
		out[n] = true
	}
	return out, nil
}

// TaxonomyJSON returns data.taxonomy for t as the JSON of a data file
// (policies/taxonomy/data.json holds DefaultTaxonomy's, for `opa test`).
func TaxonomyJSON(t Taxonomy) ([]byte, error) {
	d, err := t.data()
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(d, "", "  ")
}
