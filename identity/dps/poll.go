package dps

import "time"

// The poll schedule: how long to wait before the next request, given what
// DPS said (Retry-After on a 202 "assigning" or a 429) and how many waits
// this registration has made already.
//
// DPS's Retry-After is honoured as sent, 0 included. The SDKs do not:
// the C SDK raises anything under 1 s (or absent) to 1 s, the C# and
// Java SDKs to 2 s, and aziot-identityd ignores Retry-After altogether (it
// asks once at once after the PUT, then every 10 s). A DPS that says 0
// has the assignment ready or nearly so; waiting a second then is pure
// latency on every cold boot.
//
// A server that keeps answering "assigning" with Retry-After 0 (a bug, or
// a hostile proxy) must not turn that into a hot loop, so a floor applies
// from the second wait on: pollFloorStart, doubling with every wait up to
// pollFloorMax (1 s, the C SDK's own minimum). The first wait is never
// raised: one immediate poll is what aziot does too. Against such a
// server that is six requests in the first second of a registration, at
// most two in any later second and one a second from the seventh wait on;
// MaxPolls (with the caller's context) bounds the whole.
// A Retry-After above the floor is kept as is, so DPS's usual 1–3 s is
// never stretched.
const (
	pollFloorStart = 50 * time.Millisecond
	pollFloorMax   = time.Second
)

// pollFloor is the least wait before request n+1 when n waits came before.
func pollFloor(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	f := pollFloorStart
	for i := 1; i < n && f < pollFloorMax; i++ {
		f *= 2
	}
	return min(f, pollFloorMax)
}

// pollWait is the wait before the next request: the server's Retry-After
// (DefaultPollInterval when it sent none) raised to pollFloor(n) and
// capped at MaxRetryAfter.
func pollWait(n int, retryAfter time.Duration) time.Duration {
	return min(max(retryAfter, pollFloor(n)), MaxRetryAfter)
}
