"""A small web app that calls its database and caches, for root_databases: Python's
http.server (one request at a time, on one thread), redis-py, pymemcache, psycopg 3, PyMySQL
and mysql-connector-python from PyPI.

  REDIS_PASSWORD=... PGPASSWORD=... MYSQL_PWD=... db_app.py PORT REDIS_PORT MEMCACHED_PORT PG_PORT MYSQL_PORT
    GET /redis       runs the Redis script below, answers 200 "ok"
    GET /memcached   runs the Memcached script below, answers 200 "ok"
    GET /postgresql  runs the PostgreSQL script below, answers 200 "ok"
    GET /mysql       runs the MySQL/MariaDB script below, answers 200 "ok"

Each script is a known list of operations; root_databases.rs counts them by name and error."""
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import mysql.connector
import psycopg
import pymysql
import redis
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

PORT, REDIS_PORT, MEMCACHED_PORT, PG_PORT, MYSQL_PORT = (int(a) for a in sys.argv[1:6])
PASSWORD = os.environ.get("REDIS_PASSWORD")


def redis_script():
    # RESP2; redis-py sends AUTH and CLIENT MAINT_NOTIFICATIONS|SETINFO on connect (set-up:
    # not reported).
    r = redis.Redis(host="127.0.0.1", port=REDIS_PORT, password=PASSWORD)
    r.set("k", "v")  # SET
    assert r.get("k") == b"v"  # GET
    r.incr("n")  # INCRBY (redis-py's incr)
    r.incr("n")  # INCRBY
    p = r.pipeline(transaction=False)  # one write: SET, GET, INCRBY
    p.set("a", "1").get("a").incr("a")
    assert p.execute() == [True, b"1", 2]
    t = r.pipeline(transaction=True)  # MULTI, INCRBY, INCRBY, EXEC
    t.incr("a").incr("a")
    assert t.execute() == [3, 4]
    try:
        r.lpush("k", "x")  # LPUSH: WRONGTYPE
        raise AssertionError("LPUSH on a string succeeded")
    except redis.ResponseError:
        pass
    r.delete("k", "a", "n")  # DEL
    r.close()
    # RESP3 (HELLO 3: set-up, not reported), a value of 100 kB.
    r3 = redis.Redis(host="127.0.0.1", port=REDIS_PORT, password=PASSWORD, protocol=3)
    r3.set("big", "x" * 100_000)  # SET
    assert len(r3.get("big")) == 100_000  # GET
    r3.close()
    # Pub/sub (RESP2): the subscribed connection carries only messages from SUBSCRIBE on (not
    # an operation, and no span left open); the publisher's commands count.
    sub = redis.Redis(host="127.0.0.1", port=REDIS_PORT, password=PASSWORD)
    ps = sub.pubsub()
    ps.subscribe("news")
    assert ps.get_message(timeout=5)["type"] == "subscribe"
    pub = redis.Redis(host="127.0.0.1", port=REDIS_PORT, password=PASSWORD)
    assert pub.publish("news", "extra-extra") == 1  # PUBLISH
    msg = ps.get_message(timeout=5)
    assert msg["type"] == "message" and msg["data"] == b"extra-extra"
    ps.close()
    assert pub.exists("news") == 0  # EXISTS
    pub.close()
    sub.close()
    # SET 3, GET 3, INCRBY 5, MULTI 1, EXEC 1, LPUSH 1 (WRONGTYPE), DEL 1, PUBLISH 1, EXISTS 1.


def memcached_script():
    c = Client(("127.0.0.1", MEMCACHED_PORT))
    c.set("k", "hello", noreply=False)  # set
    assert c.get("k") == b"hello"  # get
    got = c.get_many(["k", "k2", "k3"])  # get (one operation, three keys)
    assert got == {"k": b"hello"}
    try:
        c.incr("k", 1)  # incr: CLIENT_ERROR (not a number)
        raise AssertionError("incr of a string succeeded")
    except MemcacheClientError:
        pass
    assert c.add("k", "x", noreply=False) is False  # add: NOT_STORED (not an error)
    c.set("n", "1", noreply=True)  # set, noreply
    assert c.delete("k", noreply=False)  # delete
    c.close()
    # set 2, get 2, incr 1 (CLIENT_ERROR), add 1, delete 1.


def postgresql_script():
    # Extended protocol (psycopg 3 binds parameters on the server); SCRAM authentication.
    with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="app", dbname="shop", autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text)")  # CREATE
        for i in range(3):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (i, "secret-%d" % i))  # INSERT x3
        for i in range(6):  # SELECT x6: prepared (named) from the 5th execution on
            assert conn.execute("SELECT name FROM items WHERE id = %s", (i % 3,)).fetchone()[0].startswith("secret")
        with conn.transaction():  # BEGIN, UPDATE, COMMIT
            conn.execute("UPDATE items SET name = 'x' WHERE id = %s", (1,))
        try:
            conn.execute("SELECT * FROM missing_table")  # SELECT: 42P01
            raise AssertionError("a missing table was found")
        except psycopg.errors.UndefinedTable:
            pass
        with conn.pipeline():  # INSERT x3 in one batch
            for i in range(3, 6):
                conn.execute("INSERT INTO items VALUES (%s, %s)", (i, "p"))
        conn.execute("DELETE FROM items")  # DELETE
        conn.execute("DROP TABLE items")  # DROP, then psycopg's own DEALLOCATE ALL
    # CREATE 1, INSERT 6, SELECT 7 (1 failed, 42P01), BEGIN 1, UPDATE 1, COMMIT 1, DELETE 1, DROP 1,
    # DEALLOCATE 1.


def mysql_script():
    # PyMySQL: the text protocol (COM_QUERY, parameters interpolated by the client).
    pw = os.environ.get("MYSQL_PWD")
    conn = pymysql.connect(host="127.0.0.1", port=MYSQL_PORT, user="app", password=pw, database="shop", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name TEXT)")  # CREATE
        for i in range(3):
            cur.execute("INSERT INTO items VALUES (%s, %s)", (i, "secret-%d" % i))  # INSERT x3
        cur.execute("SELECT name FROM items WHERE id = %s", (1,))  # SELECT
        assert cur.fetchone()[0] == "secret-1"
        try:
            cur.execute("SELECT * FROM missing_table")  # SELECT: 1146
            raise AssertionError("a missing table was found")
        except pymysql.err.ProgrammingError:
            pass
    conn.close()
    # mysql-connector-python, prepared: COM_STMT_PREPARE once, COM_STMT_EXECUTE per call.
    conn = mysql.connector.connect(host="127.0.0.1", port=MYSQL_PORT, user="app", password=pw, database="shop", use_pure=True, autocommit=True)
    cur = conn.cursor(prepared=True)
    for i in range(4):  # SELECT x4 (binary rows)
        cur.execute("SELECT name FROM items WHERE id = %s", (i % 3,))
        assert cur.fetchone()[0].startswith("secret")
    cur.execute("UPDATE items SET name = %s WHERE id = %s", ("y", 2))  # UPDATE
    cur.close()
    conn.cmd_ping()  # COM_PING: not an operation
    plain = conn.cursor()
    plain.execute("DROP TABLE items")  # DROP
    plain.close()
    conn.close()
    # CREATE 1, INSERT 3, SELECT 6 (1 failed, 1146), UPDATE 1, DROP 1, plus what the drivers
    # send on connect (counted by the test).


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        {"/redis": redis_script, "/memcached": memcached_script, "/postgresql": postgresql_script, "/mysql": mysql_script}[
            self.path
        ]()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
