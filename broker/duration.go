package broker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is an ISO 8601 duration (PnYnMnWnDTnHnMnS) with calendar
// semantics: P1M added to 31 January is the end of February, not 30 days.
// Fractions are not accepted; negative durations are not accepted.
type Duration struct {
	Years, Months, Weeks, Days int
	Hours, Minutes, Seconds    int
}

// MaxDurationYears bounds parsed durations so arithmetic never overflows.
const MaxDurationYears = 100

// ParseDuration parses an ISO 8601 duration such as "P90D" or "P1Y6M" or "PT12H".
func ParseDuration(s string) (Duration, error) {
	bad := func(why string) (Duration, error) {
		return Duration{}, fmt.Errorf("%w: duration %q: %s (want ISO 8601, e.g. P90D)", ErrInvalid, s, why)
	}
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" || len(s) > 40 {
		return bad("must start with P and name at least one component")
	}
	var d Duration
	inTime := false
	order := "YMWD"
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return bad("second T")
			}
			inTime, order, rest = true, "HMS", rest[1:]
			if rest == "" {
				return bad("T with no time components")
			}
			continue
		}
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || i > 9 {
			return bad("each component is digits followed by a designator")
		}
		n, _ := strconv.Atoi(rest[:i])
		unit := rest[i]
		pos := strings.IndexByte(order, unit)
		if pos < 0 {
			return bad(fmt.Sprintf("designator %q out of place", unit))
		}
		order = order[pos+1:]
		switch {
		case !inTime && unit == 'Y':
			d.Years = n
		case !inTime && unit == 'M':
			d.Months = n
		case !inTime && unit == 'W':
			d.Weeks = n
		case !inTime && unit == 'D':
			d.Days = n
		case inTime && unit == 'H':
			d.Hours = n
		case inTime && unit == 'M':
			d.Minutes = n
		case inTime && unit == 'S':
			d.Seconds = n
		}
		rest = rest[i+1:]
	}
	if d.Approx() > MaxDurationYears*365*24*time.Hour {
		return bad(fmt.Sprintf("longer than %d years", MaxDurationYears))
	}
	return d, nil
}

// MustParseDuration is ParseDuration for constants; it panics on error.
func MustParseDuration(s string) Duration {
	d, err := ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// IsZero reports whether d is the zero duration (no limit set).
func (d Duration) IsZero() bool { return d == Duration{} }

// AddTo returns t + d with calendar arithmetic.
func (d Duration) AddTo(t time.Time) time.Time {
	t = t.AddDate(d.Years, d.Months, 7*d.Weeks+d.Days)
	return t.Add(time.Duration(d.Hours)*time.Hour + time.Duration(d.Minutes)*time.Minute + time.Duration(d.Seconds)*time.Second)
}

// SubtractFrom returns t - d with calendar arithmetic: the start of the
// window of length d that ends at t.
func (d Duration) SubtractFrom(t time.Time) time.Time {
	t = t.AddDate(-d.Years, -d.Months, -(7*d.Weeks + d.Days))
	return t.Add(-(time.Duration(d.Hours)*time.Hour + time.Duration(d.Minutes)*time.Minute + time.Duration(d.Seconds)*time.Second))
}

// Approx is d as a fixed length (a year is 365 days, a month 30), for
// comparing durations with each other.
func (d Duration) Approx() time.Duration {
	days := 365*d.Years + 30*d.Months + 7*d.Weeks + d.Days
	return time.Duration(days)*24*time.Hour + time.Duration(d.Hours)*time.Hour +
		time.Duration(d.Minutes)*time.Minute + time.Duration(d.Seconds)*time.Second
}

// String formats d in ISO 8601; the zero duration is "PT0S".
func (d Duration) String() string {
	if d.IsZero() {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteByte('P')
	for _, c := range []struct {
		n int
		u byte
	}{{d.Years, 'Y'}, {d.Months, 'M'}, {d.Weeks, 'W'}, {d.Days, 'D'}} {
		if c.n != 0 {
			b.WriteString(strconv.Itoa(c.n))
			b.WriteByte(c.u)
		}
	}
	if d.Hours != 0 || d.Minutes != 0 || d.Seconds != 0 {
		b.WriteByte('T')
		for _, c := range []struct {
			n int
			u byte
		}{{d.Hours, 'H'}, {d.Minutes, 'M'}, {d.Seconds, 'S'}} {
			if c.n != 0 {
				b.WriteString(strconv.Itoa(c.n))
				b.WriteByte(c.u)
			}
		}
	}
	return b.String()
}

// MarshalJSON encodes d as its ISO 8601 string; the zero duration as "".
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte(`""`), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON decodes an ISO 8601 string; "" is the zero duration.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: duration must be an ISO 8601 string", ErrInvalid)
	}
	if s == "" {
		*d = Duration{}
		return nil
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}
