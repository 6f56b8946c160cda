// Package common holds what the demo programs share: exact request counters served as JSON,
// random failure injection and the startup line.
package common

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Counters is a set of named groups of exact counts, e.g. "factorial_requests" -> "200" -> 97.
// Safe for concurrent use.
type Counters struct {
	app string
	mu  sync.Mutex
	m   map[string]map[string]uint64
}

// NewCounters returns empty counters for the program named app.
func NewCounters(app string) *Counters {
	return &Counters{app: app, m: map[string]map[string]uint64{}}
}

// Add increments group/key by one.
func (c *Counters) Add(group, key string) {
	c.mu.Lock()
	g := c.m[group]
	if g == nil {
		g = map[string]uint64{}
		c.m[group] = g
	}
	g[key]++
	c.mu.Unlock()
}

// Snapshot copies every group.
func (c *Counters) Snapshot() map[string]map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[string]uint64, len(c.m))
	for g, keys := range c.m {
		cp := make(map[string]uint64, len(keys))
		for k, v := range keys {
			cp[k] = v
		}
		out[g] = cp
	}
	return out
}

// Stats is the JSON document served on GET /stats.
type Stats struct {
	App      string                       `json:"app"`
	Pid      int                          `json:"pid"`
	Counters map[string]map[string]uint64 `json:"counters"`
}

// ServeHTTP serves the counters as JSON (keys sorted). Requests to it are not counted.
func (c *Counters) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := json.MarshalIndent(Stats{App: c.app, Pid: os.Getpid(), Counters: c.Snapshot()}, "", "  ")
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Write(body)
}

// Failer decides at random whether to inject a failure, with probability rate.
type Failer struct {
	rate float64
	mu   sync.Mutex
	rnd  *rand.Rand
}

// NewFailer returns a Failer; seed 0 means a time-based seed.
func NewFailer(rate float64, seed int64) *Failer {
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	return &Failer{rate: rate, rnd: rand.New(rand.NewSource(seed))}
}

// Fail reports whether this call should fail.
func (f *Failer) Fail() bool {
	if f.rate <= 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rnd.Float64() < f.rate
}

// CheckRate exits with a usage error unless 0 <= rate <= 1.
func CheckRate(name string, rate float64) {
	if rate < 0 || rate > 1 {
		Fatalf("-%s must be within [0, 1], got %v", name, rate)
	}
}

// Listen opens a TCP listener and prints "<app>: listening on <addr> (<what>)" once it is open.
func Listen(app, addr, what string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		Fatalf("%v", err)
	}
	fmt.Printf("%s: listening on %s (%s)\n", app, ln.Addr(), what)
	return ln
}

// Fatalf prints to stderr and exits 1.
func Fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
