// worker: the demo's leaf service, a gRPC server for demo.Multiplier. Multiply(Range) returns
// the product of the integers in [from, to] in decimal; a -fail-rate fraction of calls fails
// at random with codes.Internal ("injected failure").
// Counters on GET http://<-stats-addr>/stats (JSON): multiply_calls by gRPC code name
// ("OK", "Internal", "InvalidArgument"), counted before the reply is sent; with
// -record-traceparent also traceparent by the values of the calls' traceparent metadata
// ("none" when absent), and with -call-url a GET of that URL before each reply (the call
// must answer 200), for the context propagation tests.
//
//	worker -addr :5001 -stats-addr :6001 -fail-rate 0.05
package main

import (
	"context"
	"flag"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"beylademo/common"
	"beylademo/demopb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// maxRange bounds the work of one call (to - from + 1 factors).
const maxRange = 100000

type server struct {
	demopb.UnimplementedMultiplierServer
	counters *common.Counters
	failer   *common.Failer
	// recordTP: count calls by their traceparent values (unbounded: tests only).
	recordTP bool
	// callURL: GET it while serving each call (tests: a call made by a gRPC handler).
	callURL string
}

func (s *server) Multiply(ctx context.Context, r *demopb.Range) (*demopb.Partial, error) {
	if s.recordTP {
		md, _ := metadata.FromIncomingContext(ctx)
		tps := md.Get("traceparent")
		if len(tps) == 0 {
			tps = []string{"none"}
		}
		for _, tp := range tps {
			s.counters.Add("traceparent", tp)
		}
	}
	if r.To >= r.From && r.To-r.From >= maxRange {
		s.counters.Add("multiply_calls", codes.InvalidArgument.String())
		return nil, status.Errorf(codes.InvalidArgument, "range [%d, %d] longer than %d", r.From, r.To, maxRange)
	}
	if s.failer.Fail() {
		s.counters.Add("multiply_calls", codes.Internal.String())
		return nil, status.Error(codes.Internal, "injected failure")
	}
	if s.callURL != "" {
		resp, err := http.Get(s.callURL)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "GET %s: %v", s.callURL, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, status.Errorf(codes.Unavailable, "GET %s: %s", s.callURL, resp.Status)
		}
	}
	p := big.NewInt(1)
	if r.From <= r.To {
		p.MulRange(int64(r.From), int64(r.To))
	}
	s.counters.Add("multiply_calls", codes.OK.String())
	return &demopb.Partial{Product: p.String()}, nil
}

func main() {
	addr := flag.String("addr", ":5001", "gRPC listen address")
	statsAddr := flag.String("stats-addr", ":6001", "HTTP listen address of GET /stats (counters as JSON)")
	failRate := flag.Float64("fail-rate", 0, "fraction of calls failed at random with codes.Internal, in [0, 1]")
	seed := flag.Int64("seed", 0, "random seed for failures (0: time based)")
	recordTP := flag.Bool("record-traceparent", false, "count calls by their traceparent metadata (tests)")
	callURL := flag.String("call-url", "", "GET this URL while serving each call (tests)")
	flag.Parse()
	common.CheckRate("fail-rate", *failRate)

	counters := common.NewCounters("worker")
	mux := http.NewServeMux()
	mux.Handle("/stats", counters)
	statsLn := common.Listen("worker", *statsAddr, "stats")
	go func() { common.Fatalf("worker: stats server: %v", http.Serve(statsLn, mux)) }()

	srv := grpc.NewServer()
	demopb.RegisterMultiplierServer(srv, &server{counters: counters, failer: common.NewFailer(*failRate, *seed), recordTP: *recordTP, callURL: *callURL})
	ln := common.Listen("worker", *addr, "grpc")
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.GracefulStop()
	}()
	if err := srv.Serve(ln); err != nil {
		common.Fatalf("worker: %v", err)
	}
}
