package oauth

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
)

// FuzzNarrow: whatever the pushed details and the posted form, the
// granted details hold only categories that were both requested and
// ticked, at the position they were requested.
func FuzzNarrow(f *testing.F) {
	f.Add(`[{"type":"steward_customer_data","categories":["Contact","Preference"],"purpose":"Marketing","duration":"P30D"}]`, "category.0=Contact")
	f.Add(`[{"categories":["A","B"],"fields":{"A":["x"],"B":["y"]}},{"categories":["C"]}]`, "category.0=B&category.1=C&category.1=Z")
	f.Add(`[{"categories":"A"}]`, "category.0=A")
	f.Add(`[]`, "")
	f.Add(`[null]`, "category.0=A")
	f.Fuzz(func(t *testing.T, raw, form string) {
		v, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		out, err := narrow(json.RawMessage(raw), v)
		if err != nil || out == nil {
			return
		}
		var in, got []struct {
			Categories []string            `json:"categories"`
			Fields     map[string][]string `json:"fields"`
		}
		if json.Unmarshal([]byte(raw), &in) != nil {
			t.Fatalf("narrow accepted unparseable details %q", raw)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("narrow produced %s: %v", out, err)
		}
		requested := map[string]bool{}
		for _, d := range in {
			for _, c := range d.Categories {
				requested[c] = true
			}
		}
		for _, d := range got {
			if len(d.Categories) == 0 {
				t.Errorf("granted a detail without categories: %s", out)
			}
			for _, c := range d.Categories {
				if !requested[c] {
					t.Errorf("granted %q, never requested: %s", c, out)
				}
				ticked := false
				for k, vs := range v {
					ticked = ticked || (len(k) > 9 && k[:9] == "category." && slices.Contains(vs, c))
				}
				if !ticked {
					t.Errorf("granted %q, never ticked: %s", c, out)
				}
			}
			for k := range d.Fields {
				if !slices.Contains(d.Categories, k) {
					t.Errorf("fields kept for %q, not granted: %s", k, out)
				}
			}
		}
	})
}
