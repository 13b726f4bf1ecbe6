package engine

import "strings"

// ActorCount says how many of the engine's actors are still registered in the process's actor
// system (their names start with the engine's id). goleak cannot see idle actors.
func ActorCount(e *Engine) int {
	n := 0
	for _, b := range e.system.ProcessRegistry.LocalPIDs.LocalPIDs {
		for id := range b.Items() {
			if strings.HasPrefix(id, e.id+"/") {
				n++
			}
		}
	}
	return n
}
