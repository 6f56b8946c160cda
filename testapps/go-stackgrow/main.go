// go-stackgrow: a Go HTTPS client whose writes meet goroutine stack growth at the entry of
// crypto/tls.(*Conn).Write, the case where a uprobe on a Go function's first instruction fires
// twice for one call (morestack returns to the entry). Standard library only.
//
// Usage: go-stackgrow <port>. It serves plain HTTP on 127.0.0.1:<port> (prints "listening on
// <port>"); GET /grow?n=N&url=https://host:port sends, on one TLS connection to that server
// (certificate not checked), N keep-alive requests GET /users/0 .. /users/N-1, one after the
// other. Request i is written by conn.Write from a new goroutine after i nested calls, so the
// stack check that fails (a new goroutine's stack is 2 KiB and grows by doubling) falls on
// Write's entry for some i, whichever the Go release. It answers "ok N" once every response
// came back with status 200.
package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
)

var sink byte

// descend calls f after n nested calls, each with a frame of some 100 bytes.
//
//go:noinline
func descend(n int, f func() error) error {
	var pad [64]byte
	if n == 0 {
		return f()
	}
	pad[n%64] = byte(n)
	err := descend(n-1, f)
	sink += pad[n%64] // keeps pad in the frame
	return err
}

func grow(base string, n int) error {
	u, err := http.NewRequest("GET", base, nil)
	if err != nil {
		return err
	}
	conn, err := tls.Dial("tcp", u.URL.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; i < n; i++ {
		req := []byte(fmt.Sprintf("GET /users/%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: go-stackgrow\r\n\r\n", i, u.URL.Host))
		done := make(chan error)
		go func(depth int) {
			done <- descend(depth, func() error { _, err := conn.Write(req); return err })
		}(i)
		if err := <-done; err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/users/%d: status %d", i, resp.StatusCode)
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-stackgrow <port>")
		os.Exit(2)
	}
	port := os.Args[1]
	http.HandleFunc("/grow", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err == nil {
			err = grow(r.URL.Query().Get("url"), n)
		}
		if err != nil {
			w.WriteHeader(500)
			fmt.Fprintf(w, "error: %v", err)
			return
		}
		fmt.Fprintf(w, "ok %d", n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", port)
	http.Serve(ln, nil)
}
