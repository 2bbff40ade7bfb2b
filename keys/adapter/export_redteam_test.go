package adapter

import "time"

// SetSessionWriteTimeout shortens how long a session reply waits for its
// peer to read; the returned func restores it.
func SetSessionWriteTimeout(d time.Duration) (restore func()) {
	old := sessionWriteTimeout.Swap(int64(d))
	return func() { sessionWriteTimeout.Store(old) }
}
