// grpcload: closed-loop gRPC load for the benchmark suite. -c goroutines share one HTTP/2
// connection (as gRPC clients do) and call demo.Multiplier/Multiply(1..10) on -addr for
// -duration; prints {"completed":N,"errors":E,"duration_s":S,"rps":R} on stdout.
// Built by bench/run in the demo's GOPATH (testapps/demo/build.sh), offline.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"beylademo/demopb"

	"google.golang.org/grpc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5001", "worker address")
	conc := flag.Int("c", 10, "concurrent callers")
	dur := flag.Duration("duration", 5*time.Second, "run time")
	flag.Parse()
	conn, err := grpc.Dial(*addr, grpc.WithInsecure())
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	client := demopb.NewMultiplierClient(conn)
	var ok, bad int64
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for i := 0; i < *conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := client.Multiply(context.Background(), &demopb.Range{From: 1, To: 10}); err != nil {
					atomic.AddInt64(&bad, 1)
				} else {
					atomic.AddInt64(&ok, 1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"completed": ok, "errors": bad, "duration_s": el, "rps": float64(ok) / el,
	})
}
