// Minimal HTTP/1.1 test service (Go standard library only) used to exercise beyla-rs instrumentation.
// Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL), else 404.
// Usage: go-http <port>; with GO_HTTP_TLS=1 it serves HTTPS (HTTP/1.1) with a self-signed
// certificate made at start-up, with GO_HTTP_TLS=h2 HTTPS with HTTP/2 offered (ALPN, the
// net/http bundled h2 server). Its client accepts any certificate, so DOWNSTREAM_URL may be
// https:// to another instance; with GO_HTTP_CLIENT_H2=1 it speaks HTTP/2 to such a server
// (net/http's bundled h2 client). GO_HTTP_TRACEPARENT_LOG=<file>: /ping appends the
// request's traceparent header (an empty line when absent) to the file (tests).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// A new TCP connection for every outgoing request (sends Connection: close).
var client = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	},
}

// selfSigned makes a certificate for 127.0.0.1 (test use only).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "go-http test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func reply(w http.ResponseWriter, status int, body []byte, ctype string) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body) // always drain so keep-alive works
	if err != nil {
		reply(w, 400, []byte("bad request"), "text/plain")
		return
	}
	path := r.URL.EscapedPath()
	switch {
	case r.Method == "GET" && path == "/ping":
		if log := os.Getenv("GO_HTTP_TRACEPARENT_LOG"); log != "" {
			f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				reply(w, 500, []byte(err.Error()), "text/plain")
				return
			}
			fmt.Fprintln(f, r.Header.Get("traceparent"))
			f.Close()
		}
		reply(w, 200, []byte("pong"), "text/plain")
	case r.Method == "GET" && strings.HasPrefix(path, "/users/") && len(path) > 7:
		reply(w, 200, []byte(`{"id":"`+path[7:]+`"}`), "application/json")
	case r.Method == "POST" && path == "/echo":
		reply(w, 200, body, "application/octet-stream")
	case r.Method == "GET" && path == "/error":
		reply(w, 500, []byte("boom"), "text/plain")
	case r.Method == "GET" && path == "/call":
		url := os.Getenv("DOWNSTREAM_URL")
		if url == "" {
			reply(w, 502, []byte("DOWNSTREAM_URL not set"), "text/plain")
			return
		}
		resp, err := client.Get(url)
		if err != nil {
			reply(w, 502, []byte("downstream error: "+err.Error()), "text/plain")
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		reply(w, 200, []byte(fmt.Sprintf("called:%d", resp.StatusCode)), "text/plain")
	default:
		reply(w, 404, []byte("not found"), "text/plain")
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-http <port>")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad port:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv("GO_HTTP_CLIENT_H2") == "1" {
		// A custom Transport gets HTTP/2 only when asked for.
		client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	}
	var cfg *tls.Config
	if mode := os.Getenv("GO_HTTP_TLS"); mode == "1" || mode == "h2" {
		cert, err := selfSigned()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}}
		if mode == "1" {
			ln = tls.NewListener(ln, cfg)
			cfg = nil
		}
	}
	fmt.Printf("listening on %d\n", port) // os.Stdout is unbuffered
	if cfg != nil {
		// ServeTLS sets up HTTP/2 (ALPN h2, http/1.1).
		srv := &http.Server{Handler: http.HandlerFunc(handle), TLSConfig: cfg}
		if err := srv.ServeTLS(ln, "", ""); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// A plain handler func (no ServeMux) so paths are never cleaned or redirected.
	if err := http.Serve(ln, http.HandlerFunc(handle)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
