// The same web app as db_app.py, in Go (net/http: each request on its own goroutine) with
// Debian's packaged clients in GOPATH mode: lib/pq (golang-github-lib-pq-dev),
// go-sql-driver/mysql 1.5 (golang-github-go-sql-driver-mysql-dev), redigo 1.8
// (golang-github-gomodule-redigo-dev) and gomemcache (golang-github-bradfitz-gomemcache-dev),
// for root_databases.
//
//	GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOPROXY=off go build -o db_app db_app.go
//	REDIS_PASSWORD=... PGPASSWORD=... MYSQL_PWD=... db_app PORT REDIS_PORT MEMCACHED_PORT PG_PORT MYSQL_PORT
//	  GET /redis       runs the Redis script below, answers 200 "ok"
//	  GET /memcached   runs the Memcached script below, answers 200 "ok"
//	  GET /postgresql  runs the PostgreSQL script below, answers 200 "ok"
//	  GET /mysql       runs the MySQL/MariaDB script below, answers 200 "ok"
//
// A failed script answers 500 with the error (and logs it to stderr). Each request opens its
// own connections on the handler's goroutine and closes them before answering; each script is
// a known list of operations that root_databases.rs counts by name and error.
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/go-sql-driver/mysql"
	"github.com/gomodule/redigo/redis"
	"github.com/lib/pq"
)

var redisPort, memcachedPort, pgPort, mysqlPort int

func check(ok bool, what string) error {
	if !ok {
		return errors.New("check failed: " + what)
	}
	return nil
}

// inGoroutine runs f on a goroutine of its own and waits for it, as handlers that fan work
// out do: the agent links its calls to the request through the goroutine's creator.
func inGoroutine(f func() error) error {
	var wg sync.WaitGroup
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		err = f()
	}()
	wg.Wait()
	return err
}

func redisScript() error {
	// RESP2; redigo sends AUTH on connect (set-up: not reported) and nothing on Close.
	c, err := redis.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", redisPort),
		redis.DialPassword(os.Getenv("REDIS_PASSWORD")), redis.DialConnectTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do("SET", "gk", "v"); err != nil { // SET
		return err
	}
	if v, err := redis.String(c.Do("GET", "gk")); err != nil || v != "v" { // GET
		return fmt.Errorf("GET gk: %q %v", v, err)
	}
	for want := 1; want <= 2; want++ { // INCR x2
		if n, err := redis.Int(c.Do("INCR", "gn")); err != nil || n != want {
			return fmt.Errorf("INCR gn: %d %v", n, err)
		}
	}
	// A pipeline: SET, GET, INCR in one write, then the three replies.
	c.Send("SET", "ga", "1")
	c.Send("GET", "ga")
	c.Send("INCR", "ga")
	if err := c.Flush(); err != nil {
		return err
	}
	if v, err := redis.String(c.Receive()); err != nil || v != "OK" {
		return fmt.Errorf("pipelined SET: %q %v", v, err)
	}
	if v, err := redis.String(c.Receive()); err != nil || v != "1" {
		return fmt.Errorf("pipelined GET: %q %v", v, err)
	}
	if n, err := redis.Int(c.Receive()); err != nil || n != 2 {
		return fmt.Errorf("pipelined INCR: %d %v", n, err)
	}
	// A transaction: MULTI, INCR, INCR, EXEC in one write (Do flushes the three Sends with
	// EXEC and returns EXEC's reply).
	c.Send("MULTI")
	c.Send("INCR", "ga")
	c.Send("INCR", "ga")
	if v, err := redis.Ints(c.Do("EXEC")); err != nil || len(v) != 2 || v[0] != 3 || v[1] != 4 {
		return fmt.Errorf("EXEC: %v %v", v, err)
	}
	_, err = c.Do("LPUSH", "gk", "x") // LPUSH: WRONGTYPE
	if e, ok := err.(redis.Error); !ok || !strings.HasPrefix(string(e), "WRONGTYPE") {
		return fmt.Errorf("LPUSH on a string: %v", err)
	}
	// DEL from a goroutine the handler starts: the request's call all the same.
	return inGoroutine(func() error {
		if n, err := redis.Int(c.Do("DEL", "gk", "ga", "gn")); err != nil || n != 3 { // DEL
			return fmt.Errorf("DEL: %d %v", n, err)
		}
		return nil
	})
	// SET 2, GET 2, INCR 5 (2 alone, 1 pipelined, 2 in the transaction), MULTI 1, EXEC 1, LPUSH 1 (WRONGTYPE), DEL 1 (plus AUTH on connect).
}

// closeIdle closes the connections a gomemcache Client keeps for reuse: Debian's gomemcache
// (a 2014 snapshot) has no Client.Close.
func closeIdle(c *memcache.Client) {
	free := reflect.ValueOf(c).Elem().FieldByName("freeconn") // map[string][]*conn
	for it := free.MapRange(); it.Next(); {
		list := it.Value()
		for i := 0; i < list.Len(); i++ {
			nc := list.Index(i).Elem().FieldByName("nc") // net.Conn
			reflect.NewAt(nc.Type(), unsafe.Pointer(nc.UnsafeAddr())).Elem().Interface().(net.Conn).Close()
		}
	}
}

func memcachedScript() error {
	// The text protocol; nothing sent on connect. gomemcache's Get and GetMulti both send
	// "gets"; GetMulti writes from a goroutine of its own (one per server).
	c := memcache.New(fmt.Sprintf("127.0.0.1:%d", memcachedPort))
	c.Timeout = 5 * time.Second
	defer closeIdle(c)
	if err := c.Set(&memcache.Item{Key: "gk", Value: []byte("hello")}); err != nil { // set
		return err
	}
	if it, err := c.Get("gk"); err != nil || string(it.Value) != "hello" { // gets
		return fmt.Errorf("get gk: %v", err)
	}
	got, err := c.GetMulti([]string{"gk", "gk2", "gk3"}) // gets (one operation, three keys)
	if err != nil || len(got) != 1 || string(got["gk"].Value) != "hello" {
		return fmt.Errorf("get gk gk2 gk3: %v %v", got, err)
	}
	// incr: CLIENT_ERROR (not a number). gomemcache then closes that connection: the rest
	// goes over a second one.
	if _, err := c.Increment("gk", 1); err == nil || !strings.Contains(err.Error(), "client error") {
		return fmt.Errorf("incr of a string: %v", err)
	}
	if err := c.Add(&memcache.Item{Key: "gk", Value: []byte("x")}); err != memcache.ErrNotStored { // add: NOT_STORED
		return fmt.Errorf("add of an existing key: %v", err)
	}
	if err := c.Delete("gk"); err != nil { // delete
		return err
	}
	return nil
	// set 1, gets 2, incr 1 (CLIENT_ERROR), add 1 (NOT_STORED), delete 1; two connections.
}

func postgresqlScript() error {
	// lib/pq: SCRAM authentication (PGPASSWORD is read by lib/pq itself), nothing sent after
	// it on connect. Statements without parameters go as a simple Query; with parameters as
	// Parse (unnamed) + Describe + Sync, then Bind + Execute + Sync.
	db, err := sql.Open("postgres", fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=shop sslmode=disable", pgPort))
	if err != nil {
		return err
	}
	// One connection, opened on this goroutine by the first statement; Terminate on Close.
	db.SetMaxOpenConns(1)
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS gitems (id int PRIMARY KEY, name text)"); err != nil { // CREATE
		return err
	}
	// INSERT x3 (lib/pq: unnamed statements), then a named statement ("1"): Parse once,
	// Bind + Execute per call, Close at the end.
	if err := insertAndSelect(db, "$1", "$2"); err != nil {
		return err
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM gitems").Scan(&n); err != nil || n != 3 { // SELECT (simple)
		return fmt.Errorf("count: %d %v", n, err)
	}
	tx, err := db.Begin() // BEGIN (sent as "BEGIN READ WRITE")
	if err != nil {
		return err
	}
	if _, err := tx.Exec("UPDATE gitems SET name = 'x' WHERE id = $1", 1); err != nil { // UPDATE (unnamed)
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil { // COMMIT
		return err
	}
	rows, err := db.Query("SELECT * FROM missing_table") // SELECT: 42P01
	if err == nil {
		rows.Close()
		return errors.New("a missing table was found")
	}
	if e, ok := err.(*pq.Error); !ok || e.Code != "42P01" {
		return fmt.Errorf("SELECT from a missing table: %v", err)
	}
	if _, err := db.Exec("DELETE FROM gitems"); err != nil { // DELETE
		return err
	}
	// DROP from a goroutine the handler starts: the request's call all the same.
	return inGoroutine(func() error {
		_, err := db.Exec("DROP TABLE gitems") // DROP
		return err
	})
	// CREATE 1, INSERT 3, SELECT 5 (1 failed, 42P01), BEGIN 1, UPDATE 1, COMMIT 1, DELETE 1,
	// DROP 1: 14. Simple Query: CREATE, SELECT count, BEGIN, COMMIT, the failed SELECT, DELETE,
	// DROP; Parse/Bind/Execute: INSERT x3 and UPDATE unnamed, SELECT x3 as statement "1".
}

func mysqlScript() error {
	// go-sql-driver/mysql 1.5: nothing sent after authentication on connect (NewConfig's
	// MaxAllowedPacket spares the SELECT @@max_allowed_packet), COM_QUIT on close. Statements
	// without arguments go as COM_QUERY; with arguments as COM_STMT_PREPARE, COM_STMT_EXECUTE,
	// COM_STMT_CLOSE per call (server-side prepared statements, interpolateParams=false).
	cfg := mysql.NewConfig()
	cfg.User = "app"
	cfg.Passwd = os.Getenv("MYSQL_PWD")
	cfg.Net = "tcp"
	cfg.Addr = fmt.Sprintf("127.0.0.1:%d", mysqlPort)
	cfg.DBName = "shop"
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	// One connection, opened on this goroutine by the first statement; COM_QUIT on Close.
	db.SetMaxOpenConns(1)
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS gitems (id INT PRIMARY KEY, name TEXT)"); err != nil { // CREATE
		return err
	}
	// INSERT x3 (go-sql-driver: prepare, execute, close each), then SELECT x3 prepared once
	// (binary rows), closed.
	if err := insertAndSelect(db, "?", "?"); err != nil {
		return err
	}
	rows, err := db.Query("SELECT * FROM missing_table") // SELECT: 1146
	if err == nil {
		rows.Close()
		return errors.New("a missing table was found")
	}
	if e, ok := err.(*mysql.MySQLError); !ok || e.Number != 1146 {
		return fmt.Errorf("SELECT from a missing table: %v", err)
	}
	if _, err := db.Exec("DROP TABLE gitems"); err != nil { // DROP
		return err
	}
	return nil
	// CREATE 1, INSERT 3, SELECT 4 (1 failed, 1146), DROP 1: 9. COM_QUERY 3 (CREATE, the failed
	// SELECT, DROP), COM_STMT_PREPARE 4, COM_STMT_EXECUTE 6, COM_STMT_CLOSE 4.
}

// insertAndSelect inserts rows 0..2 into gitems, then selects each through one prepared
// statement; p1 and p2 are the driver's placeholders. INSERT 3, SELECT 3.
func insertAndSelect(db *sql.DB, p1, p2 string) error {
	for i := 0; i < 3; i++ {
		if _, err := db.Exec("INSERT INTO gitems VALUES ("+p1+", "+p2+")", i, fmt.Sprintf("secret-g%d", i)); err != nil {
			return err
		}
	}
	st, err := db.Prepare("SELECT name FROM gitems WHERE id = " + p1)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := 0; i < 3; i++ {
		var name string
		if err := st.QueryRow(i).Scan(&name); err != nil || name != fmt.Sprintf("secret-g%d", i) {
			return fmt.Errorf("SELECT %d: %q %v", i, name, err)
		}
	}
	return st.Close()
}

func main() {
	if len(os.Args) != 6 {
		log.Fatalf("usage: %s PORT REDIS_PORT MEMCACHED_PORT PG_PORT MYSQL_PORT", os.Args[0])
	}
	ports := make([]int, 5)
	for i := range ports {
		p, err := strconv.Atoi(os.Args[i+1])
		if err != nil {
			log.Fatalf("port %q: %v", os.Args[i+1], err)
		}
		ports[i] = p
	}
	redisPort, memcachedPort, pgPort, mysqlPort = ports[1], ports[2], ports[3], ports[4]
	routes := map[string]func() error{
		"/redis":      redisScript,
		"/memcached":  memcachedScript,
		"/postgresql": postgresqlScript,
		"/mysql":      mysqlScript,
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		script, ok := routes[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if err := script(); err != nil {
			log.Printf("%s: %v", r.URL.Path, err)
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, err.Error())
			return
		}
		fmt.Fprint(w, "ok")
	})
	log.Fatal(http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", ports[0]), handler))
}
