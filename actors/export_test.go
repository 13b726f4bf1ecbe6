package actors

// Running says how many RoundTrip calls have not returned.
func (f *Inflight) Running() int64 { return f.running.Load() }
