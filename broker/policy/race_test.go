//go:build race

package policy_test

// raceEnabled shortens the slowest tests under the race detector, which
// makes each policy evaluation about ten times slower.
const raceEnabled = true
