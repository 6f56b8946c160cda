// The same web app as db_app.py, in Java (JDK 17's com.sun.net.httpserver, one request at a
// time on the server's dispatcher thread) with Debian's drivers: pgjdbc
// (libpostgresql-jdbc-java), MariaDB Connector/J 2.7 (libmariadb-java) and spymemcached
// (libspymemcached-java), for root_databases.
//
//   PGPASSWORD=... MYSQL_PWD=... java -cp /usr/share/java/postgresql.jar:/usr/share/java/mariadb-java-client.jar:\
//     /usr/share/java/spymemcached.jar:CLASSDIR DbApp PORT REDIS_PORT MEMCACHED_PORT PG_PORT MYSQL_PORT
//     GET /postgresql  runs the PostgreSQL script below, answers 200 "ok"
//     GET /mysql       runs the MariaDB script below, answers 200 "ok"
//     GET /memcached   runs the Memcached script below, answers 200 "ok"
//
// REDIS_PORT is ignored (Debian packages no Java Redis client). Each request opens its own
// connections on the handler thread and closes them before answering; each script is a known
// list of operations that root_databases.rs counts by name and error.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Map;
import net.spy.memcached.MemcachedClient;

public class DbApp {
    static int memcachedPort, pgPort, mysqlPort;
    // spymemcached logs through java.util.logging, errors only (its INFO lines and the warning
    // about an operation queued before the connection is up would come on every request).
    static final java.util.logging.Logger SPY_LOG = java.util.logging.Logger.getLogger("net.spy.memcached");

    interface Script {
        void run() throws Exception;
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void postgresql() throws Exception {
        // pgjdbc: the extended protocol for everything (Parse/Bind/Execute/Sync, unnamed
        // statements), SCRAM authentication. On connect it sends SET extra_float_digits = 3 and
        // SET application_name = 'PostgreSQL JDBC Driver', each its own Parse/Bind/Execute/Sync.
        String url = "jdbc:postgresql://127.0.0.1:" + pgPort + "/shop";
        try (Connection c = DriverManager.getConnection(url, "app", System.getenv("PGPASSWORD"))) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS jitems (id int PRIMARY KEY, name text)"); // CREATE
            }
            try (PreparedStatement p = c.prepareStatement("INSERT INTO jitems VALUES (?, ?)")) {
                for (int i = 0; i < 3; i++) { // INSERT x3
                    p.setInt(1, i);
                    p.setString(2, "secret-j" + i);
                    p.executeUpdate();
                }
            }
            // SELECT x6 with one PreparedStatement: unnamed for the first 4 executions, then
            // (prepareThreshold=5) a named server-side statement, S_1, parsed once on the 5th.
            try (PreparedStatement p = c.prepareStatement("SELECT name FROM jitems WHERE id = ?")) {
                for (int i = 0; i < 6; i++) {
                    p.setInt(1, i % 3);
                    try (ResultSet r = p.executeQuery()) {
                        check(r.next() && r.getString(1).startsWith("secret"), "SELECT");
                    }
                }
            }
            // BEGIN and the UPDATE in one Sync (pgjdbc sends BEGIN itself with the first
            // statement), then COMMIT (which pgjdbc prepares as a named statement, S_2).
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("UPDATE jitems SET name = 'x' WHERE id = ?")) {
                p.setInt(1, 1);
                check(p.executeUpdate() == 1, "UPDATE");
            }
            c.commit();
            c.setAutoCommit(true); // nothing sent: no transaction open
            try (Statement s = c.createStatement()) {
                try {
                    s.executeQuery("SELECT * FROM missing_table").close(); // SELECT: 42P01
                    throw new AssertionError("a missing table was found");
                } catch (SQLException e) {
                    if (!"42P01".equals(e.getSQLState())) throw e;
                }
                s.execute("DELETE FROM jitems"); // DELETE
                s.execute("DROP TABLE jitems"); // DROP
            }
        }
        // SET 2 (on connect), CREATE 1, INSERT 3, SELECT 7 (1 failed, 42P01), BEGIN 1, UPDATE 1,
        // COMMIT 1, DELETE 1, DROP 1: 18, every one Parse/Bind/Execute (no simple Query), the
        // SELECTs unnamed x5 (the failed one included) and S_1 x2, COMMIT as S_2.
    }

    static void mysql() throws Exception {
        // Connector/J 2.7: the text protocol by default (COM_QUERY); PreparedStatements are
        // prepared on the client (parameters interpolated). On each connect it sends two
        // COM_QUERY: "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')" and
        // "SELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment";
        // COM_QUIT on close.
        String url = "jdbc:mariadb://127.0.0.1:" + mysqlPort + "/shop";
        String pw = System.getenv("MYSQL_PWD");
        try (Connection c = DriverManager.getConnection(url, "app", pw)) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS jitems (id INT PRIMARY KEY, name TEXT)"); // CREATE
            }
            try (PreparedStatement p = c.prepareStatement("INSERT INTO jitems VALUES (?, ?)")) {
                for (int i = 0; i < 3; i++) { // INSERT x3 (COM_QUERY)
                    p.setInt(1, i);
                    p.setString(2, "secret-j" + i);
                    p.executeUpdate();
                }
            }
            try (PreparedStatement p = c.prepareStatement("SELECT name FROM jitems WHERE id = ?")) {
                p.setInt(1, 1); // SELECT (COM_QUERY)
                try (ResultSet r = p.executeQuery()) {
                    check(r.next() && r.getString(1).equals("secret-j1"), "SELECT");
                }
            }
            try (Statement s = c.createStatement()) {
                try {
                    s.executeQuery("SELECT * FROM missing_table").close(); // SELECT: 1146
                    throw new AssertionError("a missing table was found");
                } catch (SQLException e) {
                    if (e.getErrorCode() != 1146) throw e;
                }
            }
        }
        // Server-side prepared: COM_STMT_PREPARE once, COM_STMT_EXECUTE per call (binary rows);
        // no COM_STMT_CLOSE (the driver caches the statement until the connection closes).
        try (Connection c = DriverManager.getConnection(url + "?useServerPrepStmts=true", "app", pw)) {
            try (PreparedStatement p = c.prepareStatement("SELECT name FROM jitems WHERE id = ?")) {
                for (int i = 0; i < 3; i++) { // SELECT x3 (COM_STMT_EXECUTE)
                    p.setInt(1, i);
                    try (ResultSet r = p.executeQuery()) {
                        check(r.next() && r.getString(1).startsWith("secret"), "SELECT (prepared)");
                    }
                }
            }
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE jitems"); // DROP (COM_QUERY)
            }
        }
        // SET 2 and SELECT 2 (on the two connects), CREATE 1, INSERT 3, SELECT 5 (1 failed, 1146),
        // DROP 1: SELECT 7 in all, 14 operations (COM_QUERY 11, COM_STMT_PREPARE 1,
        // COM_STMT_EXECUTE 3).
    }

    static void memcached() throws Exception {
        // spymemcached: the text protocol; it does its IO on its own thread ("Memcached IO
        // over ..."), not on the HTTP handler's, so these calls are not children of the request.
        MemcachedClient c = new MemcachedClient(new InetSocketAddress("127.0.0.1", memcachedPort));
        try {
            check(c.set("jk", 0, "hello").get(), "set"); // set
            check("hello".equals(c.get("jk")), "get"); // get
            Map<String, Object> got = c.getBulk("jk", "jk2", "jk3"); // get (one operation, three keys)
            check(got.size() == 1 && "hello".equals(got.get("jk")), "getBulk");
            check(c.delete("jk").get(), "delete"); // delete
        } finally {
            c.shutdown();
        }
        // set 1, get 2 (the multi-get goes as "get jk2 jk jk3"), delete 1; nothing on connect,
        // no quit on shutdown.
    }

    static void handle(HttpExchange ex) throws IOException {
        Script script = switch (ex.getRequestURI().getPath()) {
            case "/postgresql" -> DbApp::postgresql;
            case "/mysql" -> DbApp::mysql;
            case "/memcached" -> DbApp::memcached;
            default -> null;
        };
        int status = 200;
        byte[] body = "ok".getBytes(StandardCharsets.UTF_8);
        if (script == null) {
            status = 404;
            body = "not found".getBytes(StandardCharsets.UTF_8);
        } else {
            try {
                script.run();
            } catch (Throwable e) {
                e.printStackTrace();
                status = 500;
                body = String.valueOf(e).getBytes(StandardCharsets.UTF_8);
            }
        }
        ex.sendResponseHeaders(status, body.length); // Content-Length: body.length
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    public static void main(String[] args) throws Exception {
        System.setProperty("net.spy.log.LoggerImpl", "net.spy.memcached.compat.log.SunLogger");
        SPY_LOG.setLevel(java.util.logging.Level.SEVERE);
        int port = Integer.parseInt(args[0]);
        memcachedPort = Integer.parseInt(args[2]);
        pgPort = Integer.parseInt(args[3]);
        mysqlPort = Integer.parseInt(args[4]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/", DbApp::handle);
        server.setExecutor(null); // the default: every request on the dispatcher thread, one at a time
        server.start();
    }
}
