package broker

import (
	"errors"
	"math"
	"strconv"
	"testing"
)

// TestCanonicalJSONRFC8785 checks the worked examples of RFC 8785.
func TestCanonicalJSONRFC8785(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "§3.2.2 sample",
			in: `{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			want: `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{
			name: "§3.2.3 sorting",
			in: `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			want: "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		{name: "nested", in: ` { "b" : [ 1 , { "z":0, "a": -0 } ], "a": {} , "c": [] } `, want: `{"a":{},"b":[1,{"a":0,"z":0}],"c":[]}`},
		{name: "escapes", in: `"\u0000\u001f\b\t\n\f\r\u007f\u2028"`, want: "\"\\u0000\\u001f\\b\\t\\n\\f\\r\u007f\u2028\""},
		{name: "integers", in: `[0, -1, 42, 9007199254740992, 100e0, 1.0]`, want: `[0,-1,42,9007199254740992,100,1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			again, err := CanonicalJSON(got)
			if err != nil || string(again) != string(got) {
				t.Errorf("canonical form is not a fixed point: %s, %v", again, err)
			}
		})
	}
}

// TestCanonicalNumbersRFC8785 checks the IEEE 754 examples of RFC 8785 Appendix B.
func TestCanonicalNumbersRFC8785(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tt := range tests {
		in := strconv.FormatFloat(math.Float64frombits(tt.bits), 'g', -1, 64)
		got, err := CanonicalJSON([]byte(in))
		if err != nil {
			t.Errorf("%#x: %v", tt.bits, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%#x (%s): got %s, want %s", tt.bits, in, got, tt.want)
		}
	}
}

func TestCanonicalJSONRefuses(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[1,]`, `{"a":1,}`, `{"a":1,"a":2}`, `"\ud800"`, `"\udc00\ud800"`, "\"\xff\"",
		`01`, `1.`, `.5`, `1e`, `+1`, `1e400`, `NaN`, `tru`, `"a` + "\n" + `"`, `[1] [2]`, `{"a" 1}`,
		`"\x"`, `"\u12"`, `{1:2}`,
	} {
		if got, err := CanonicalJSON([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("CanonicalJSON(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
	deep := make([]byte, 0, 200)
	for range 100 {
		deep = append(deep, '[')
	}
	if _, err := CanonicalJSON(deep); !errors.Is(err, ErrInvalid) {
		t.Errorf("deep nesting: %v", err)
	}
}
