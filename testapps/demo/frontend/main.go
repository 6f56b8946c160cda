// frontend: the demo's entry service. GET / serves a small HTML page; GET /factorial/{n} calls
// the backend's GET /factorial/{n} (HTTP/1.1 keep-alive) and answers with the backend's status
// and body (a 5xx stays a 5xx; 502 if the backend cannot be reached). Anything else is 404.
// Counters on GET /stats (JSON), all counted before the response is written:
//   factorial_requests  by HTTP status returned ("200", "400", "500", "502")
//   backend_calls       by the backend's HTTP status, or "error" (no response)
//   page_requests       GET / by status; other_requests: everything else by status
//   frontend -addr :8080 -backend http://127.0.0.1:8081
package main

import (
	"flag"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"beylademo/common"
)

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>beyla-rs demo</title></head>
<body>
<h1>Factorials, computed the hard way</h1>
<p>frontend &rarr; backend &rarr; three gRPC workers, each multiplying one third of 1..n.</p>
<form onsubmit="go(); return false"><input id="n" type="number" min="0" value="20"> <button>n!</button></form>
<pre id="out"></pre>
<script>
async function go() {
  const r = await fetch('/factorial/' + document.getElementById('n').value);
  document.getElementById('out').textContent = r.status + '\n' + await r.text();
}
</script>
</body></html>
`

type frontend struct {
	backend  string
	client   *http.Client
	counters *common.Counters
}

func (f *frontend) reply(w http.ResponseWriter, group string, code int, ctype string, body []byte) {
	f.counters.Add(group, strconv.Itoa(code))
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

func (f *frontend) handle(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	switch {
	case r.Method == "GET" && r.URL.Path == "/":
		f.reply(w, "page_requests", 200, "text/html; charset=utf-8", []byte(page))
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/factorial/"):
		f.factorial(w, r)
	default:
		f.reply(w, "other_requests", 404, "text/plain", []byte("not found\n"))
	}
}

func (f *frontend) factorial(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), "GET", f.backend+r.URL.EscapedPath(), nil)
	if err != nil {
		f.reply(w, "factorial_requests", 400, "text/plain", []byte(err.Error()+"\n"))
		return
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.counters.Add("backend_calls", "error")
		f.reply(w, "factorial_requests", 502, "text/plain", []byte("backend: "+err.Error()+"\n"))
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		f.counters.Add("backend_calls", "error")
		f.reply(w, "factorial_requests", 502, "text/plain", []byte("backend: "+err.Error()+"\n"))
		return
	}
	f.counters.Add("backend_calls", strconv.Itoa(resp.StatusCode))
	f.reply(w, "factorial_requests", resp.StatusCode, "text/plain", body)
}

func main() {
	addr := flag.String("addr", ":8080", "HTTP listen address")
	backend := flag.String("backend", "http://127.0.0.1:8081", "backend base URL")
	timeout := flag.Duration("timeout", 15*time.Second, "timeout of one backend call")
	flag.Parse()

	f := &frontend{
		backend: strings.TrimRight(*backend, "/"),
		client: &http.Client{Timeout: *timeout, Transport: &http.Transport{
			Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		}},
		counters: common.NewCounters("frontend"),
	}
	mux := http.NewServeMux()
	mux.Handle("/stats", f.counters)
	mux.HandleFunc("/", f.handle)
	ln := common.Listen("frontend", *addr, "http; backend "+f.backend)
	common.Fatalf("frontend: %v", http.Serve(ln, mux))
}
