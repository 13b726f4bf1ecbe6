package engine

// ActorCount says how many actors the engine's system still has registered, beyond the two
// protoactor keeps for itself (event stream and dead letters). goleak cannot see idle actors.
func ActorCount(e *Engine) int {
	n := 0
	for _, b := range e.system.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += b.Count()
	}
	return n - 2
}
