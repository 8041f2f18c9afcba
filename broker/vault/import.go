package vault

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stewardhq/steward/broker"
	"github.com/stewardhq/steward/broker/store"
)

// Format is an import file format.
type Format string

// The import formats.
//
// JSON is an array with one object per record:
//
//	[{"category": "Contact", "value": {"email": "alice@example.org"}},
//	 {"category": "Demographic", "value": {"birth_year": 1988}}]
//
// Its rows are numbered from 1 in array order. Each category may appear
// once.
//
// CSV has the header "category,field,value" and one row per field. A list
// field is written with an index, and a field of a list item after it:
//
//	category,field,value
//	Contact,email,alice@example.org
//	Preference,interests[0],cycling
//	PurchasesAndSpendingHabit,purchases[0].merchant,Acme Retail
//	PurchasesAndSpendingHabit,purchases[0].amount,21.50
//
// Its rows are numbered as a spreadsheet numbers them: the header is row 1.
// Each (category, field) may appear once; list indices run 0, 1, 2… A UTF-8
// byte order mark and either line ending are accepted.
const (
	JSON Format = "json"
	CSV  Format = "csv"
)

// Import limits.
const (
	// MaxImportBytes bounds an import file.
	MaxImportBytes = 1 << 20
	// MaxImportRows bounds the rows of an import file.
	MaxImportRows = 5000
	// MaxImportErrors bounds the row errors reported; ImportError.More
	// says whether there were more.
	MaxImportErrors = 100
)

// RowError is one problem with one row of an import.
type RowError struct {
	// Row is the 1-based row (0 for the file as a whole).
	Row int `json:"row"`
	// Field names the column or field path concerned, if any.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// ImportError lists every row that failed. Nothing was stored. It wraps
// broker.ErrInvalid.
type ImportError struct {
	Rows []RowError `json:"errors"`
	// More is set when more than MaxImportErrors rows failed.
	More bool `json:"more,omitempty"`
}

func (e *ImportError) Error() string {
	var b strings.Builder
	b.WriteString("import refused:")
	for i, r := range e.Rows {
		if i == 3 {
			fmt.Fprintf(&b, " (and %d more)", len(e.Rows)-i)
			break
		}
		fmt.Fprintf(&b, " row %d", r.Row)
		if r.Field != "" {
			fmt.Fprintf(&b, " %s", r.Field)
		}
		fmt.Fprintf(&b, ": %s;", r.Message)
	}
	return strings.TrimSuffix(b.String(), ";")
}

func (e *ImportError) Unwrap() error { return broker.ErrInvalid }

// add records a row error; it reports false once the error budget is spent.
func (e *ImportError) add(row int, field, format string, args ...any) bool {
	if len(e.Rows) >= MaxImportErrors {
		e.More = true
		return false
	}
	e.Rows = append(e.Rows, RowError{Row: row, Field: field, Message: fmt.Sprintf(format, args...)})
	return true
}

// tooMany reports a file with more than MaxImportRows rows, first, as a
// problem of the file as a whole.
func (e *ImportError) tooMany() *ImportError {
	e.Rows = append([]RowError{{Message: fmt.Sprintf("more than %d rows", MaxImportRows)}}, e.Rows...)
	if len(e.Rows) > MaxImportErrors {
		e.Rows, e.More = e.Rows[:MaxImportErrors], true
	}
	return e
}

func (e *ImportError) addRecord(row int, err error, rowOf func(path string) int) {
	var re *RecordError
	if !errors.As(err, &re) {
		e.add(row, "", "%v", err)
		return
	}
	for _, f := range re.Fields {
		r := row
		if rowOf != nil {
			r = rowOf(f.Field)
		}
		e.add(r, f.Field, "%s", f.Message)
	}
}

func (e *ImportError) orNil() error {
	if len(e.Rows) == 0 {
		return nil
	}
	sort.SliceStable(e.Rows, func(i, j int) bool { return e.Rows[i].Row < e.Rows[j].Row })
	return e
}

// ImportRecord is one validated record of an import file, its value
// normalised as CheckRecord returns it.
type ImportRecord struct {
	Row      int             `json:"row"`
	Category string          `json:"category"`
	Value    json.RawMessage `json:"value"`
}

// ParseImport reads and validates an import file. It returns the records
// in file order, or an *ImportError listing every row that failed (up to
// MaxImportErrors); the two are never both set.
func ParseImport(format Format, r io.Reader) ([]ImportRecord, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxImportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read import: %w", err)
	}
	if len(b) > MaxImportBytes {
		return nil, &ImportError{Rows: []RowError{{Message: fmt.Sprintf("the file is larger than %d bytes", MaxImportBytes)}}}
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	switch format {
	case JSON:
		return parseJSON(b)
	case CSV:
		return parseCSV(b)
	}
	return nil, fmt.Errorf("%w: import format %q: want json or csv", broker.ErrInvalid, format)
}

func parseJSON(b []byte) ([]ImportRecord, error) {
	e := &ImportError{}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		e.add(0, "", `the file must be a JSON array of {"category": …, "value": {…}} objects`)
		return nil, e
	}
	var out []ImportRecord
	seen := map[string]int{}
	row := 0
	for dec.More() {
		row++
		if row > MaxImportRows {
			return nil, e.tooMany()
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			e.add(row, "", "not valid JSON: %v", err)
			return nil, e
		}
		rec, ok := jsonRow(e, row, raw, seen)
		if !ok {
			continue
		}
		out = append(out, rec)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		e.add(row+1, "", "the array is not closed")
		return nil, e
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		e.add(0, "", "data after the array")
	}
	if row == 0 {
		e.add(0, "", "no records")
	}
	if err := e.orNil(); err != nil {
		return nil, err
	}
	return out, nil
}

func jsonRow(e *ImportError, row int, raw []byte, seen map[string]int) (ImportRecord, bool) {
	if !utf8.Valid(raw) {
		e.add(row, "", "not valid UTF-8")
		return ImportRecord{}, false
	}
	v, err := decodeStrict(raw)
	if err != nil {
		e.add(row, "", "%v", err)
		return ImportRecord{}, false
	}
	obj, ok := v.(map[string]any)
	if !ok {
		e.add(row, "", `must be an object {"category": …, "value": {…}}`)
		return ImportRecord{}, false
	}
	for k := range obj {
		if k != "category" && k != "value" {
			e.add(row, k, "unknown member; a row has only category and value")
			return ImportRecord{}, false
		}
	}
	cat, ok := obj["category"].(string)
	if !ok {
		e.add(row, "category", "must be a category name")
		return ImportRecord{}, false
	}
	if _, known := Schemas[cat]; !known {
		e.add(row, "category", "unknown category %q", truncate(cat))
		return ImportRecord{}, false
	}
	if first, dup := seen[cat]; dup {
		e.add(row, "category", "%s already given in row %d", cat, first)
		return ImportRecord{}, false
	}
	seen[cat] = row
	val, ok := obj["value"].(map[string]any)
	if !ok {
		e.add(row, "value", "must be an object")
		return ImportRecord{}, false
	}
	norm, err := checkObject(cat, Schemas[cat], val)
	if err != nil {
		e.addRecord(row, err, nil)
		return ImportRecord{}, false
	}
	return ImportRecord{Row: row, Category: cat, Value: norm}, true
}

func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	for i := 40; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// pathRE parses a CSV field path: name, name[i] or name[i].sub.
var pathRE = regexp.MustCompile(`^([a-z_]+)(?:\[([0-9]{1,4})\](?:\.([a-z_]+))?)?$`)

// csvCategory collects one category's cells.
type csvCategory struct {
	first  int
	scalar map[string]any
	// lists maps a list field to its items by index; an Objects item is
	// a map of its fields.
	lists map[string]map[int]any
	rows  map[string]int // field path → row
}

func parseCSV(b []byte) ([]ImportRecord, error) {
	e := &ImportError{}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil || len(header) != 3 || !slices.Equal(lower(header), []string{"category", "field", "value"}) {
		e.add(1, "", `the first row must be the header "category,field,value"`)
		return nil, e
	}
	cats := map[string]*csvCategory{}
	var order []string
	row := 1
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		row++
		if row > MaxImportRows+1 {
			return nil, e.tooMany()
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				e.add(row, "", "not valid CSV (line %d): %v", pe.Line, pe.Err)
			} else {
				e.add(row, "", "not valid CSV: %v", err)
			}
			return nil, e
		}
		csvRow(e, row, rec, cats, &order)
	}
	if row == 1 {
		e.add(0, "", "no records")
	}
	var out []ImportRecord
	for _, name := range order {
		c := cats[name]
		obj, ok := c.build(e, name)
		if !ok {
			continue
		}
		norm, err := checkObject(name, Schemas[name], obj)
		if err != nil {
			e.addRecord(c.first, err, c.rowOf)
			continue
		}
		out = append(out, ImportRecord{Row: c.first, Category: name, Value: norm})
	}
	if err := e.orNil(); err != nil {
		return nil, err
	}
	return out, nil
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out
}

// csvRow checks one data row and files its cell under its category.
func csvRow(e *ImportError, row int, rec []string, cats map[string]*csvCategory, order *[]string) bool {
	if len(rec) != 3 {
		return e.add(row, "", "has %d cells, want 3 (category, field, value)", len(rec))
	}
	for i, col := range []string{"category", "field", "value"} {
		rec[i] = strings.TrimSpace(rec[i])
		if msg := checkText(rec[i]); msg != "" {
			return e.add(row, col, "%s", msg)
		}
	}
	cat, path, cell := rec[0], rec[1], rec[2]
	fields, known := Schemas[cat]
	if !known {
		return e.add(row, "category", "unknown category %q", truncate(cat))
	}
	m := pathRE.FindStringSubmatch(path)
	if m == nil {
		return e.add(row, "field", "%q is not a field name, name[i] or name[i].field", truncate(path))
	}
	name, idxs, sub := m[1], m[2], m[3]
	fi := slices.IndexFunc(fields, func(f Field) bool { return f.Name == name })
	if fi < 0 {
		return e.add(row, path, "unknown field of %s", cat)
	}
	f := fields[fi]
	c := cats[cat]
	if c == nil {
		c = &csvCategory{first: row, scalar: map[string]any{}, lists: map[string]map[int]any{}, rows: map[string]int{}}
		cats[cat] = c
		*order = append(*order, cat)
	}
	if first, dup := c.rows[path]; dup {
		return e.add(row, path, "already given in row %d", first)
	}
	c.rows[path] = row
	switch {
	case f.Kind == Strings && idxs != "" && sub == "":
		v, err := fromCell(Field{Kind: String}, cell)
		if err != nil {
			return e.add(row, path, "%v", err)
		}
		c.item(name, idxs)[0] = v
	case f.Kind == Objects && idxs != "" && sub != "":
		si := slices.IndexFunc(f.Fields, func(g Field) bool { return g.Name == sub })
		if si < 0 {
			return e.add(row, path, "unknown field of %s items", name)
		}
		v, err := fromCell(f.Fields[si], cell)
		if err != nil {
			return e.add(row, path, "%v", err)
		}
		item := c.item(name, idxs)
		if item[1] == nil {
			item[1] = map[string]any{}
		}
		item[1].(map[string]any)[sub] = v
	case f.Kind != Strings && f.Kind != Objects && idxs == "":
		v, err := fromCell(f, cell)
		if err != nil {
			return e.add(row, path, "%v", err)
		}
		c.scalar[name] = v
	case f.Kind == Strings:
		return e.add(row, path, "a list: write %s[0], %s[1], …", name, name)
	case f.Kind == Objects:
		return e.add(row, path, "a list of objects: write %s[0].<field>", name)
	default:
		return e.add(row, path, "not a list")
	}
	return true
}

// item returns a two-slot holder for list item idx of field name: slot 0
// holds a Strings item, slot 1 an Objects item's fields.
func (c *csvCategory) item(name, idxs string) []any {
	i, _ := strconv.Atoi(idxs)
	l := c.lists[name]
	if l == nil {
		l = map[int]any{}
		c.lists[name] = l
	}
	if l[i] == nil {
		l[i] = make([]any, 2)
	}
	return l[i].([]any)
}

// build turns the collected cells into a record object, checking that list
// indices run 0, 1, 2… without gaps.
func (c *csvCategory) build(e *ImportError, cat string) (map[string]any, bool) {
	obj := map[string]any{}
	for k, v := range c.scalar {
		obj[k] = v
	}
	ok := true
	for name, items := range c.lists {
		idx := make([]int, 0, len(items))
		for i := range items {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		list := make([]any, len(idx))
		for pos, i := range idx {
			if i != pos {
				e.add(c.rowOf(fmt.Sprintf("%s[%d]", name, i)), fmt.Sprintf("%s[%d]", name, i), "list items must be numbered 0, 1, 2… without gaps; %s[%d] is missing", name, pos)
				ok = false
				break
			}
			slots := items[i].([]any)
			if slots[1] != nil {
				list[pos] = slots[1]
			} else {
				list[pos] = slots[0]
			}
		}
		obj[name] = list
	}
	return obj, ok
}

// rowOf finds the row that gave a field path, or the nearest row that
// gave part of it, or the category's first row.
func (c *csvCategory) rowOf(path string) int {
	if r, ok := c.rows[path]; ok {
		return r
	}
	best := 0
	for p, r := range c.rows {
		if strings.HasPrefix(p, path) || strings.HasPrefix(path, strings.SplitN(p, ".", 2)[0]) {
			if best == 0 || r < best {
				best = r
			}
		}
	}
	if best == 0 {
		return c.first
	}
	return best
}

var (
	intRE = regexp.MustCompile(`^-?[0-9]{1,18}$`)
	numRE = regexp.MustCompile(`^-?[0-9]{1,15}(\.[0-9]{1,15})?$`)
)

// fromCell converts a CSV cell to the JSON type its field expects, so the
// same schema check runs on both formats.
func fromCell(f Field, s string) (any, error) {
	switch f.Kind {
	case Integer, Year:
		if !intRE.MatchString(s) {
			return nil, errors.New("must be a whole number")
		}
		return json.Number(s), nil
	case Number:
		if !numRE.MatchString(s) {
			return nil, errors.New("must be a decimal number such as 21.50")
		}
		return json.Number(s), nil
	}
	return s, nil
}

// Import reads a JSON or CSV file of vault records for the customer and
// stores them all, sealed, replacing the customer's records of the same
// categories, in one transaction. If any row fails it stores nothing and
// returns an *ImportError (wrapping broker.ErrInvalid) listing every row
// that failed, with its row number, field and message. It returns the
// categories imported, in file order.
func (s *Service) Import(ctx context.Context, customer broker.CustomerID, format Format, r io.Reader) ([]string, error) {
	recs, err := ParseImport(format, r)
	if err != nil {
		return nil, fmt.Errorf("import for %s: %w", customer, err)
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		k, err := s.keyFor(ctx, tx, customer, true)
		if err != nil {
			return err
		}
		now := s.now()
		for _, rec := range recs {
			if err := s.putSealed(ctx, tx, k, rec.Category, rec.Value, "import", now); err != nil {
				return fmt.Errorf("row %d: %w", rec.Row, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import for %s: %w", customer, err)
	}
	cats := make([]string, len(recs))
	for i, rec := range recs {
		cats[i] = rec.Category
	}
	return cats, nil
}
