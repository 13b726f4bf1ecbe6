package actors

// Running says how many RoundTrip calls have not returned.
func (f *Inflight) Running() int64 { return f.running.Load() }

// Watching says how many requests Close would still have to end: their context's AfterFunc on the
// engine's life is neither stopped nor run.
func (f *Inflight) Watching() int64 { return f.watching.Load() }
