// h2c test service: HTTP/2 over cleartext (prior knowledge or Upgrade) through
// golang.org/x/net/http2's server (Debian's golang-golang-x-net-dev, GOPATH mode), the server
// gRPC-less HTTP/2 apps use. Routes: GET /users/{id} (200), GET /error (500), else 404.
// Usage: go-h2c <port>; prints "listening on <port>" once it accepts connections.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func handle(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/users/"):
		fmt.Fprintf(w, "user %s over %s\n", strings.TrimPrefix(r.URL.Path, "/users/"), r.Proto)
	case r.Method == http.MethodGet && r.URL.Path == "/error":
		http.Error(w, "injected error", http.StatusInternalServerError)
	default:
		http.NotFound(w, r)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-h2c <port>")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-h2c:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", os.Args[1])
	srv := &http.Server{Handler: h2c.NewHandler(http.HandlerFunc(handle), &http2.Server{})}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "go-h2c:", err)
		os.Exit(1)
	}
}
