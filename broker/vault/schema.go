package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/mail"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stewardhq/steward/broker"
)

// Kind is the type of a schema field.
type Kind string

// The field kinds.
const (
	String   Kind = "string"   // text, 1..Max characters
	Email    Kind = "email"    // a plain RFC 5322 address, as broker.Customer accepts
	Phone    Kind = "phone"    // E.164-ish: '+', then 7-15 digits, spaces or hyphens between
	Integer  Kind = "integer"  // whole number in [Min, Max]
	Number   Kind = "number"   // decimal number in [Min, Max]
	Year     Kind = "year"     // whole year from Min to the current year
	Date     Kind = "date"     // YYYY-MM-DD
	Month    Kind = "month"    // YYYY-MM
	Country  Kind = "country"  // ISO 3166-1 alpha-2
	Currency Kind = "currency" // ISO 4217 alpha-3
	Enum     Kind = "enum"     // one of Values
	Strings  Kind = "strings"  // list of 1..Max strings, each 1..ItemMax characters
	Objects  Kind = "objects"  // list of 1..Max objects with Fields
)

// Field is one field of a category's schema.
type Field struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Max is the most characters (String, Strings items via ItemMax), the
	// highest value (Integer, Number) or the most items (Strings, Objects).
	Max float64 `json:"max,omitempty"`
	// Min is the lowest value (Integer, Number, Year).
	Min float64 `json:"min,omitempty"`
	// ItemMax is the most characters of each Strings item.
	ItemMax int `json:"item_max,omitempty"`
	// Values are the allowed Enum values.
	Values []string `json:"values,omitempty"`
	// Fields are the fields of each Objects item.
	Fields []Field `json:"fields,omitempty"`
	// Required marks a field every Objects item must have. At the top
	// level every field is optional, but a record needs at least one.
	Required bool `json:"required,omitempty"`
}

// Shared field shapes.
var (
	fEmail    = Field{Name: "email", Kind: Email}
	fPhone    = Field{Name: "phone", Kind: Phone}
	fAddress  = Field{Name: "address", Kind: String, Max: 500}
	fPostcode = Field{Name: "postcode", Kind: String, Max: 20}
	fCountry  = Field{Name: "country", Kind: Country}
	fText     = func(name string, max float64) Field { return Field{Name: name, Kind: String, Max: max} }
	fList     = func(name string, n float64) Field { return Field{Name: name, Kind: Strings, Max: n, ItemMax: 100} }
	fCurrency = Field{Name: "currency", Kind: Currency}
)

// Schemas is every category's schema: the fields a vault record of that
// category may have. It is the one place the vault's shape is declared.
var Schemas = map[string][]Field{
	"Contact":         {fEmail, fPhone, fAddress, fPostcode, fCountry},
	"EmailAddress":    {fEmail},
	"TelephoneNumber": {fPhone},
	"PhysicalAddress": {fAddress, fPostcode, fCountry},
	"Demographic": {
		{Name: "birth_year", Kind: Year, Min: 1900},
		{Name: "household_size", Kind: Integer, Min: 1, Max: 30},
		fText("gender", 50),
		fCountry,
	},
	"Age":           {{Name: "birth_year", Kind: Year, Min: 1900}, {Name: "age", Kind: Integer, Min: 0, Max: 130}},
	"Gender":        {fText("gender", 50)},
	"HouseholdData": {{Name: "household_size", Kind: Integer, Min: 1, Max: 30}, {Name: "children", Kind: Integer, Min: 0, Max: 20}},
	"PurchasesAndSpendingHabit": {
		{Name: "purchases", Kind: Objects, Max: 1000, Fields: []Field{
			{Name: "merchant", Kind: String, Max: 200, Required: true},
			{Name: "amount", Kind: Number, Min: 0, Max: 1e9, Required: true},
			{Name: "currency", Kind: Currency, Required: true},
			{Name: "date", Kind: Date},
			fText("category", 100),
		}},
	},
	"Preference": {
		{Name: "contact_by", Kind: Enum, Values: []string{"email", "phone", "post", "sms", "none"}},
		fList("interests", 50),
		fText("language", 35),
	},
	"Interest": {fList("interests", 50)},
	"Financial": {
		fText("income_band", 50),
		fText("credit_score_band", 30),
	},
	"Income": {{Name: "annual_income", Kind: Number, Min: 0, Max: 1e10}, fCurrency, fText("band", 50)},
	"CreditRecord": {
		{Name: "score", Kind: Integer, Min: 0, Max: 1000},
		fText("band", 30),
		fText("provider", 200),
	},
	"Location": {
		fText("home_region", 200),
		{Name: "recent", Kind: Objects, Max: 500, Fields: []Field{
			{Name: "city", Kind: String, Max: 200, Required: true},
			{Name: "month", Kind: Month},
			fCountry,
		}},
	},
	"Health":               {fList("allergies", 100), fList("conditions", 100), fList("medications", 100)},
	"Biometric":            {{Name: "modality", Kind: Enum, Values: []string{"face", "fingerprint", "iris", "voice"}}, fText("reference", 200)},
	"Genetic":              {fText("provider", 200), fText("summary", 2000)},
	"Religion":             {fText("religion", 100)},
	"PoliticalOpinion":     {fText("affiliation", 200), fList("views", 50)},
	"SexualOrientation":    {fText("orientation", 100)},
	"RacialOrEthnicOrigin": {fText("origin", 200)},
	"TradeUnionMembership": {fText("union", 200), {Name: "member_since", Kind: Date}},
}

// Limits on one record.
const (
	// MaxDepth bounds nesting in a record value.
	MaxDepth = 8
	// MaxStringBytes bounds any one string, whatever its field allows.
	MaxStringBytes = 4096
)

// FieldError is one problem with one field of a record.
type FieldError struct {
	// Field is the path of the field: "email", "purchases[2].amount", or
	// "" for the record as a whole.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// RecordError lists everything wrong with a record value. It wraps
// broker.ErrInvalid.
type RecordError struct {
	Category string
	Fields   []FieldError
}

func (e *RecordError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s record:", e.Category)
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteByte(';')
		}
		if f.Field != "" {
			fmt.Fprintf(&b, " %s:", f.Field)
		}
		fmt.Fprintf(&b, " %s", f.Message)
	}
	return b.String()
}

func (e *RecordError) Unwrap() error { return broker.ErrInvalid }

// CheckRecord checks a record value against its category's schema and
// returns it normalised: members sorted, numbers in shortest form, no
// insignificant white space. It refuses, with a *RecordError, unknown
// categories and fields, wrong types, values out of range, strings that
// are not valid UTF-8 or hold control characters or begin like a
// spreadsheet formula (see FormulaLike), duplicate member names, nesting
// deeper than MaxDepth and values larger than broker.MaxRecordBytes.
func CheckRecord(category string, value json.RawMessage) (json.RawMessage, error) {
	fail := func(field, format string, args ...any) (json.RawMessage, error) {
		return nil, &RecordError{Category: category, Fields: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
	}
	fields, ok := Schemas[category]
	if !ok {
		return fail("", "unknown category %q", category)
	}
	if len(value) > broker.MaxRecordBytes {
		return fail("", "larger than %d bytes", broker.MaxRecordBytes)
	}
	if !utf8.Valid(value) {
		return fail("", "not valid UTF-8")
	}
	v, err := decodeStrict(value)
	if err != nil {
		return fail("", "%v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fail("", "must be a JSON object")
	}
	return checkObject(category, fields, obj)
}

// checkObject validates a decoded record and returns its normalised JSON.
func checkObject(category string, fields []Field, obj map[string]any) (json.RawMessage, error) {
	var errs []FieldError
	out := checkFields(fields, obj, "", false, &errs)
	if len(obj) == 0 {
		errs = append(errs, FieldError{Message: "a record needs at least one field"})
	}
	if len(errs) > 0 {
		return nil, &RecordError{Category: category, Fields: errs}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, &RecordError{Category: category, Fields: []FieldError{{Message: err.Error()}}}
	}
	if len(b) > broker.MaxRecordBytes {
		return nil, &RecordError{Category: category, Fields: []FieldError{{Message: fmt.Sprintf("larger than %d bytes", broker.MaxRecordBytes)}}}
	}
	return b, nil
}

func checkFields(fields []Field, obj map[string]any, prefix string, items bool, errs *[]FieldError) map[string]any {
	out := make(map[string]any, len(obj))
	for _, name := range sortedKeys(obj) {
		i := slices.IndexFunc(fields, func(f Field) bool { return f.Name == name })
		if i < 0 {
			*errs = append(*errs, FieldError{Field: prefix + name, Message: "unknown field"})
			continue
		}
		if v, ok := checkValue(fields[i], obj[name], prefix+name, errs); ok {
			out[name] = v
		}
	}
	if items {
		for _, f := range fields {
			if _, ok := obj[f.Name]; f.Required && !ok {
				*errs = append(*errs, FieldError{Field: prefix + f.Name, Message: "required"})
			}
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var (
	phoneRE = regexp.MustCompile(`^\+[0-9][0-9 -]*[0-9]$`)
	dateRE  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	monthRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}$`)
	upperRE = func(n int) *regexp.Regexp { return regexp.MustCompile(fmt.Sprintf(`^[A-Z]{%d}$`, n)) }
	iso2RE  = upperRE(2)
	iso3RE  = upperRE(3)
)

func checkValue(f Field, v any, path string, errs *[]FieldError) (any, bool) {
	bad := func(format string, args ...any) (any, bool) {
		*errs = append(*errs, FieldError{Field: path, Message: fmt.Sprintf(format, args...)})
		return nil, false
	}
	switch f.Kind {
	case Integer, Number, Year:
		n, ok := v.(json.Number)
		if !ok {
			return bad("must be a number, not %s", typeName(v))
		}
		lo, hi := f.Min, f.Max
		if f.Kind == Year {
			hi = float64(time.Now().UTC().Year())
		}
		if f.Kind == Number {
			x, err := strconv.ParseFloat(string(n), 64)
			if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
				return bad("not a finite number")
			}
			if x < lo || x > hi {
				return bad("must be between %g and %g", lo, hi)
			}
			return x, true
		}
		x, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return bad("must be a whole number")
		}
		if float64(x) < lo || float64(x) > hi {
			return bad("must be between %g and %g", lo, hi)
		}
		return x, true
	case Strings:
		list, ok := v.([]any)
		if !ok {
			return bad("must be a list of strings, not %s", typeName(v))
		}
		if len(list) == 0 || float64(len(list)) > f.Max {
			return bad("must have 1 to %g items", f.Max)
		}
		out := make([]any, 0, len(list))
		for i, it := range list {
			if s, ok := checkString(Field{Kind: String, Max: float64(f.ItemMax)}, it, fmt.Sprintf("%s[%d]", path, i), errs); ok {
				out = append(out, s)
			}
		}
		return out, true
	case Objects:
		list, ok := v.([]any)
		if !ok {
			return bad("must be a list of objects, not %s", typeName(v))
		}
		if len(list) == 0 || float64(len(list)) > f.Max {
			return bad("must have 1 to %g items", f.Max)
		}
		out := make([]any, 0, len(list))
		for i, it := range list {
			p := fmt.Sprintf("%s[%d]", path, i)
			obj, ok := it.(map[string]any)
			if !ok {
				*errs = append(*errs, FieldError{Field: p, Message: "must be an object, not " + typeName(it)})
				continue
			}
			out = append(out, checkFields(f.Fields, obj, p+".", true, errs))
		}
		return out, true
	}
	return checkString(f, v, path, errs)
}

func checkString(f Field, v any, path string, errs *[]FieldError) (any, bool) {
	bad := func(format string, args ...any) (any, bool) {
		*errs = append(*errs, FieldError{Field: path, Message: fmt.Sprintf(format, args...)})
		return nil, false
	}
	s, ok := v.(string)
	if !ok {
		return bad("must be a string, not %s", typeName(v))
	}
	if msg := checkText(s); msg != "" {
		return bad("%s", msg)
	}
	switch f.Kind {
	case String:
		if n := utf8.RuneCountInString(s); float64(n) > f.Max {
			return bad("must be at most %g characters", f.Max)
		}
	case Email:
		a, err := mail.ParseAddress(s)
		if err != nil || a.Address != s || len(s) > 254 {
			return bad("not a plain email address")
		}
	case Phone:
		digits := 0
		for _, r := range s {
			if r >= '0' && r <= '9' {
				digits++
			}
		}
		if !phoneRE.MatchString(s) || digits < 7 || digits > 15 {
			return bad("must be an international number: '+' and 7 to 15 digits")
		}
	case Date, Month:
		layout, re := "2006-01-02", dateRE
		if f.Kind == Month {
			layout, re = "2006-01", monthRE
		}
		t, err := time.Parse(layout, s)
		if !re.MatchString(s) || err != nil || t.Year() < 1900 || t.Year() > 2200 {
			return bad("must be a date written %s", strings.ToUpper(strings.NewReplacer("2006", "yyyy", "01", "mm", "02", "dd").Replace(layout)))
		}
	case Country:
		if !iso2RE.MatchString(s) {
			return bad("must be an ISO 3166-1 alpha-2 code such as GB")
		}
	case Currency:
		if !iso3RE.MatchString(s) {
			return bad("must be an ISO 4217 code such as GBP")
		}
	case Enum:
		if !slices.Contains(f.Values, s) {
			return bad("must be one of %s", strings.Join(f.Values, ", "))
		}
	}
	return s, true
}

// checkText says what is wrong with a string value, or "".
func checkText(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > MaxStringBytes:
		return fmt.Sprintf("longer than %d bytes", MaxStringBytes)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }):
		return "contains control characters"
	case FormulaLike(s):
		return "begins like a spreadsheet formula (=, @, + or - followed by a non-digit)"
	}
	return ""
}

// FormulaLike reports whether s would be taken for a formula by a
// spreadsheet that opens it from CSV (CSV injection): it begins with '=',
// '@', a tab or carriage return, or with '+' or '-' not followed by a
// digit. A '+' or '-' followed by a digit is data only if the whole value
// looks like a number or phone number (digits, spaces, '.', '-', '(' and
// ')'): "+44 20 7946 0018" and "-3.5" are data; "=HYPERLINK(…)",
// "@SUM(…)", "-cmd" and "-2+3+cmd|…" are not.
func FormulaLike(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '=', '@', '\t', '\r':
		return true
	case '+', '-':
		return !numberLikeRE.MatchString(s)
	}
	return false
}

var numberLikeRE = regexp.MustCompile(`^[+-][0-9][0-9 .()-]*$`)

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeStrict decodes one JSON value, refusing duplicate member names,
// nesting deeper than MaxDepth and trailing data. Numbers stay json.Number.
func decodeStrict(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := walk(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func walk(dec *json.Decoder, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", MaxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("not valid JSON: %v", err)
				}
				k := kt.(string)
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("member %q appears twice", k)
				}
				v, err := walk(dec, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			_, err := dec.Token()
			return m, err
		case '[':
			l := []any{}
			for dec.More() {
				v, err := walk(dec, depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token()
			return l, err
		}
		return nil, fmt.Errorf("not valid JSON: unexpected %v", t)
	}
	return tok, nil
}
