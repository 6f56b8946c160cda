// loadgen: the demo's client. Sends GET <url>/factorial/{n} (n random in [0, -max-n]) with
// -concurrency workers over HTTP/1.1 keep-alive connections, at most -rate requests/s in all
// (0: as fast as possible), until -n requests were sent or -duration passed (both 0: until
// SIGTERM/SIGINT). It sends no trace headers. Before the first request it waits (up to -wait)
// for the target's TCP port to accept connections, without sending a request, and, with
// -gate FILE, until FILE exists (run.sh opens the gate once the agent instruments loadgen).
// At the end it prints one JSON summary on stdout:
//   {"app":"loadgen","sent":N,"by_status":{"200":a,"500":b},"transport_errors":0,...}
// sent counts every request attempted (= sum of by_status + transport_errors). Exit status 0,
// or 1 when any request got no HTTP response (transport_errors > 0).
//   loadgen -url http://127.0.0.1:8080 -n 1000 -concurrency 4
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"beylademo/common"
)

type summary struct {
	App             string            `json:"app"`
	URL             string            `json:"url"`
	Sent            uint64            `json:"sent"`
	ByStatus        map[string]uint64 `json:"by_status"`
	TransportErrors uint64            `json:"transport_errors"`
	DurationSeconds float64           `json:"duration_seconds"`
	PerSecond       float64           `json:"requests_per_second"`
}

func waitForPort(u string, max time.Duration) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	host := pu.Host
	if pu.Port() == "" {
		host = net.JoinHostPort(pu.Hostname(), "80")
	}
	deadline := time.Now().Add(max)
	for {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func main() {
	target := flag.String("url", "http://127.0.0.1:8080", "frontend base URL")
	n := flag.Uint64("n", 0, "number of requests (0: no limit)")
	duration := flag.Duration("duration", 0, "how long to send (0: no limit)")
	concurrency := flag.Int("concurrency", 4, "parallel connections")
	rate := flag.Float64("rate", 0, "requests per second in all (0: unlimited)")
	maxN := flag.Int("max-n", 300, "largest n asked for")
	seed := flag.Int64("seed", 0, "random seed for n (0: time based)")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for the target port")
	report := flag.Duration("report", 0, "also print the summary so far to stderr at this interval (0: never)")
	gate := flag.String("gate", "", "wait until this file exists before the first request")
	flag.Parse()
	base := strings.TrimRight(*target, "/")
	if *concurrency < 1 {
		common.Fatalf("-concurrency must be at least 1")
	}
	if err := waitForPort(base, *wait); err != nil {
		common.Fatalf("loadgen: %s not reachable after %v: %v", base, *wait, err)
	}
	if *gate != "" {
		for {
			if _, err := os.Stat(*gate); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	// Tickets: one per request allowed; closed when the limit is reached or ctx ends.
	tickets := make(chan struct{})
	go func() {
		defer close(tickets)
		var tick <-chan time.Time
		if *rate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / *rate))
			defer t.Stop()
			tick = t.C
		}
		for i := uint64(0); *n == 0 || i < *n; i++ {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return
				}
			}
			select {
			case tickets <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: nil, MaxIdleConns: *concurrency, MaxIdleConnsPerHost: *concurrency, IdleConnTimeout: 90 * time.Second,
	}}
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	var (
		mu       sync.Mutex
		byStatus = map[string]uint64{}
		sent     uint64
		terrs    uint64
	)
	start := time.Now()
	snapshot := func() summary {
		mu.Lock()
		defer mu.Unlock()
		s := summary{App: "loadgen", URL: base, Sent: atomic.LoadUint64(&sent), ByStatus: map[string]uint64{},
			TransportErrors: terrs, DurationSeconds: time.Since(start).Seconds()}
		for k, v := range byStatus {
			s.ByStatus[k] = v
		}
		if s.DurationSeconds > 0 {
			s.PerSecond = float64(s.Sent) / s.DurationSeconds
		}
		return s
	}
	if *report > 0 {
		go func() {
			for range time.Tick(*report) {
				b, _ := json.Marshal(snapshot())
				fmt.Fprintf(os.Stderr, "%s\n", b)
			}
		}()
	}
	var wg sync.WaitGroup
	for c := 0; c < *concurrency; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(*seed + int64(c)))
			for range tickets {
				u := base + "/factorial/" + strconv.Itoa(rnd.Intn(*maxN+1))
				atomic.AddUint64(&sent, 1)
				// Not bound to ctx: a request once sent is always completed and counted.
				resp, err := client.Get(u)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				if err != nil {
					terrs++
					if terrs <= 5 {
						fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
					}
				} else {
					byStatus[strconv.Itoa(resp.StatusCode)]++
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	s := snapshot()
	b, _ := json.Marshal(s)
	fmt.Printf("%s\n", b)
	if s.TransportErrors > 0 {
		os.Exit(1)
	}
}
