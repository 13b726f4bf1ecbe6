// Package bench measures the engine. For now it holds the hot-path benchmark (a valid token, a 200,
// over an in-memory transport) that compares the engine with a raw http.Client on the same
// transport; the harness that races it against other client libraries comes later.
//
//	go test -run '^$' -bench . -benchmem -count 6 ./bench/ | tee new.txt
package bench
