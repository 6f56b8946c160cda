// backend: the demo's middle service. GET /factorial/{n} splits 1..n into one contiguous range
// per worker, calls Multiplier.Multiply on every worker concurrently over gRPC (one goroutine
// per call, started by the handler), multiplies the partial products with math/big and answers
// 200 with n! in decimal. A -fail-rate fraction of requests fails at random with 500 before
// any worker is called; any worker error also gives 500. Bad n gives 400 without worker calls.
// Counters on GET /stats (JSON), all counted before the response is written:
//
//	factorial_requests  by HTTP status returned ("200", "400", "500")
//	failures            "injected" (random 500s) and "worker_error" (500s due to a worker)
//	fanout_calls        by gRPC code name ("OK", "Internal", ...), one per worker call
//	fanout_by_worker    "<worker address>/<code>"
//	backend -addr :8081 -workers 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 -fail-rate 0.05
//
// A -workers entry "dns:///host:port" stands for every address the name resolves to (a headless
// Kubernetes Service), re-resolved every 5 s.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"beylademo/common"
	"beylademo/demopb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// maxN bounds the work of one request.
const maxN = 20000

type worker struct {
	addr   string
	client demopb.MultiplierClient
}

// pool holds one gRPC connection per worker address.
type pool struct {
	specs []string
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	cur   []worker
	// dialed: the worker list was resolved and dialed once.
	dialed bool
}

func (p *pool) resolve() ([]string, error) {
	var addrs []string
	for _, s := range p.specs {
		if !strings.HasPrefix(s, "dns:///") {
			addrs = append(addrs, s)
			continue
		}
		host, port, err := net.SplitHostPort(strings.TrimPrefix(s, "dns:///"))
		if err != nil {
			return nil, fmt.Errorf("worker %q: %v", s, err)
		}
		ips, err := net.LookupHost(host)
		if err != nil {
			return nil, fmt.Errorf("worker %q: %v", s, err)
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip, port))
		}
	}
	sort.Strings(addrs)
	return addrs, nil
}

// refresh re-resolves the worker list, dialing new addresses and closing gone ones.
func (p *pool) refresh() error {
	addrs, err := p.resolve()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := map[string]bool{}
	var cur []worker
	for _, a := range addrs {
		keep[a] = true
		cc := p.conns[a]
		if cc == nil {
			cc, err = grpc.Dial(a, grpc.WithInsecure())
			if err != nil {
				return fmt.Errorf("dial %s: %v", a, err)
			}
			p.conns[a] = cc
		}
		cur = append(cur, worker{addr: a, client: demopb.NewMultiplierClient(cc)})
	}
	for a, cc := range p.conns {
		if !keep[a] {
			cc.Close()
			delete(p.conns, a)
		}
	}
	p.cur = cur
	p.dialed = true
	return nil
}

// workers dials on first use, not at start-up: a connection opened before the agent attaches
// is seen mid-stream, and HTTP/2 header compression (HPACK) cannot be decoded from there.
func (p *pool) workers() []worker {
	p.mu.Lock()
	dialed := p.dialed
	p.mu.Unlock()
	if !dialed {
		if err := p.refresh(); err != nil {
			fmt.Printf("backend: %v (retrying on the next request)\n", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

type backend struct {
	pool     *pool
	counters *common.Counters
	failer   *common.Failer
	timeout  time.Duration
}

func (b *backend) reply(w http.ResponseWriter, code int, body string) {
	b.counters.Add("factorial_requests", strconv.Itoa(code))
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write([]byte(body))
}

func (b *backend) factorial(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/factorial/"))
	if err != nil || n < 0 || n > maxN {
		b.reply(w, http.StatusBadRequest, fmt.Sprintf("n must be an integer in [0, %d]\n", maxN))
		return
	}
	if b.failer.Fail() {
		b.counters.Add("failures", "injected")
		b.reply(w, http.StatusInternalServerError, "injected failure\n")
		return
	}
	ws := b.pool.workers()
	if len(ws) == 0 {
		b.counters.Add("failures", "no_workers")
		b.reply(w, http.StatusInternalServerError, "no workers\n")
		return
	}
	// One contiguous range per worker: [i*chunk+1, min((i+1)*chunk, n)] (empty ranges give 1).
	chunk := (n + len(ws) - 1) / len(ws)
	partials := make([]string, len(ws))
	errs := make([]error, len(ws))
	ctx, cancel := context.WithTimeout(r.Context(), b.timeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, wk := range ws {
		wg.Add(1)
		go func(i int, wk worker) {
			defer wg.Done()
			from, to := i*chunk+1, (i+1)*chunk
			if to > n {
				to = n
			}
			// WaitForReady: a worker still starting (or reconnecting) delays the call, bounded
			// by -timeout, instead of failing it at once with Unavailable.
			res, err := wk.client.Multiply(ctx, &demopb.Range{From: uint64(from), To: uint64(to)}, grpc.WaitForReady(true))
			code := status.Code(err).String()
			b.counters.Add("fanout_calls", code)
			b.counters.Add("fanout_by_worker", wk.addr+"/"+code)
			if err != nil {
				errs[i] = fmt.Errorf("worker %s: %v", wk.addr, err)
				return
			}
			partials[i] = res.Product
		}(i, wk)
	}
	wg.Wait()
	product := big.NewInt(1)
	for i := range ws {
		if errs[i] != nil {
			b.counters.Add("failures", "worker_error")
			b.reply(w, http.StatusInternalServerError, errs[i].Error()+"\n")
			return
		}
		p, ok := new(big.Int).SetString(partials[i], 10)
		if !ok {
			b.counters.Add("failures", "worker_error")
			b.reply(w, http.StatusInternalServerError, "bad partial from "+ws[i].addr+"\n")
			return
		}
		product.Mul(product, p)
	}
	b.reply(w, http.StatusOK, product.String()+"\n")
}

func main() {
	addr := flag.String("addr", ":8081", "HTTP listen address")
	workers := flag.String("workers", "127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003",
		"comma-separated worker gRPC addresses; dns:///host:port means every address host resolves to")
	failRate := flag.Float64("fail-rate", 0, "fraction of requests failed at random with 500, in [0, 1]")
	seed := flag.Int64("seed", 0, "random seed for failures (0: time based)")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of the worker calls of one request")
	flag.Parse()
	common.CheckRate("fail-rate", *failRate)

	p := &pool{conns: map[string]*grpc.ClientConn{}}
	dynamic := false
	for _, s := range strings.Split(*workers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.specs = append(p.specs, s)
			dynamic = dynamic || strings.HasPrefix(s, "dns:///")
		}
	}
	if len(p.specs) == 0 {
		common.Fatalf("backend: -workers is empty")
	}
	if dynamic {
		go func() {
			for range time.Tick(5 * time.Second) {
				if err := p.refresh(); err != nil {
					fmt.Printf("backend: %v\n", err)
				}
			}
		}()
	}

	b := &backend{pool: p, counters: common.NewCounters("backend"), failer: common.NewFailer(*failRate, *seed), timeout: *timeout}
	mux := http.NewServeMux()
	mux.HandleFunc("/factorial/", b.factorial)
	mux.Handle("/stats", b.counters)
	ln := common.Listen("backend", *addr, fmt.Sprintf("http; workers %v", p.specs))
	common.Fatalf("backend: %v", http.Serve(ln, mux))
}
