// Minimal HTTP/1.1 test service (JDK 17 only: com.sun.net.httpserver) used to exercise beyla-rs instrumentation.
// Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL), else 404.
// Usage: java -cp testapps/build/java App <port>
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;

public class App {
    public static void main(String[] args) throws IOException {
        if (args.length < 1) {
            System.err.println("usage: App <port>");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        // Outgoing HttpURLConnection requests: no pooling, a new TCP connection (Connection: close) each time.
        System.setProperty("http.keepAlive", "false");
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 128);
        server.createContext("/", App::handle);
        server.setExecutor(Executors.newCachedThreadPool());
        server.start();
        System.out.println("listening on " + port);
        System.out.flush();
    }

    static void handle(HttpExchange ex) throws IOException {
        try (ex) {
            byte[] body = ex.getRequestBody().readAllBytes(); // always drain so keep-alive works
            String method = ex.getRequestMethod();
            String path = ex.getRequestURI().getRawPath();
            if (method.equals("GET") && path.equals("/ping")) {
                reply(ex, 200, "pong", "text/plain");
            } else if (method.equals("GET") && path.startsWith("/users/") && path.length() > 7) {
                reply(ex, 200, "{\"id\":\"" + path.substring(7) + "\"}", "application/json");
            } else if (method.equals("POST") && path.equals("/echo")) {
                reply(ex, 200, body, "application/octet-stream");
            } else if (method.equals("GET") && path.equals("/error")) {
                reply(ex, 500, "boom", "text/plain");
            } else if (method.equals("GET") && path.equals("/call")) {
                callDownstream(ex);
            } else {
                reply(ex, 404, "not found", "text/plain");
            }
        }
    }

    static void callDownstream(HttpExchange ex) throws IOException {
        String url = System.getenv("DOWNSTREAM_URL");
        if (url == null || url.isEmpty()) {
            reply(ex, 502, "DOWNSTREAM_URL not set", "text/plain");
            return;
        }
        try {
            HttpURLConnection conn = (HttpURLConnection) new URL(url).openConnection();
            conn.setConnectTimeout(10000);
            conn.setReadTimeout(10000);
            int status = conn.getResponseCode();
            InputStream in = status >= 400 ? conn.getErrorStream() : conn.getInputStream();
            if (in != null) {
                in.readAllBytes();
                in.close();
            }
            conn.disconnect();
            reply(ex, 200, "called:" + status, "text/plain");
        } catch (IOException e) {
            reply(ex, 502, "downstream error: " + e.getMessage(), "text/plain");
        }
    }

    static void reply(HttpExchange ex, int status, String body, String ctype) throws IOException {
        reply(ex, status, body.getBytes(StandardCharsets.UTF_8), ctype);
    }

    static void reply(HttpExchange ex, int status, byte[] body, String ctype) throws IOException {
        ex.getResponseHeaders().set("Content-Type", ctype);
        // -1 = no body (Content-Length: 0); a length of 0 would mean chunked encoding.
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(body);
        }
    }
}
