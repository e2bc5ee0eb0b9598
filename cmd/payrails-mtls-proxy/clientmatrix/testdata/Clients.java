// The client matrix's Java clients: java.net.http.HttpClient and HttpURLConnection.
//
// Usage: java -cp DIR [-Dhttp.proxyHost=... -Dhttps.proxyHost=... -Djavax.net.ssl.trustStore=...] Clients httpclient|urlconnection,
// with the plan in MATRIX_PLAN (see matrix_test.go). The proxy comes from the system properties, as
// Java services set it; credentials from an Authenticator. Prints one JSON line per case.
import java.io.*;
import java.net.*;
import java.net.http.*;
import java.nio.file.*;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.*;
import java.util.regex.*;

public class Clients {
    static String plan = System.getenv("MATRIX_PLAN");

    // A tiny reader for the plan's flat fields: the plan is ours, its strings hold no escapes.
    static String str(String src, String key) {
        Matcher m = Pattern.compile("\"" + key + "\":\"([^\"]*)\"").matcher(src);
        return m.find() ? m.group(1) : "";
    }

    static List<String[]> cases() {
        List<String[]> out = new ArrayList<>();
        Matcher m = Pattern.compile("\\{\"name\":\"([^\"]*)\",\"urls\":\\[([^\\]]*)\\]\\}").matcher(plan);
        while (m.find()) {
            List<String> c = new ArrayList<>();
            c.add(m.group(1));
            for (String u : m.group(2).split(",")) c.add(u.replace("\"", ""));
            out.add(c.toArray(new String[0]));
        }
        return out;
    }

    static String hex(byte[] b) throws Exception {
        StringBuilder sb = new StringBuilder();
        for (byte x : MessageDigest.getInstance("SHA-256").digest(b)) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static String esc(String s) {
        return s == null ? "" : s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ").replace("\r", " ");
    }

    static void report(String name, int status, String error, byte[] body, String proxyError, String enc) throws Exception {
        System.out.println("{\"case\":\"" + name + "\",\"status\":" + status + ",\"error\":\"" + esc(error) + "\",\"body_sha256\":\""
                + hex(body == null ? new byte[0] : body) + "\",\"proxy_error\":\"" + esc(proxyError) + "\",\"content_encoding\":\"" + esc(enc) + "\"}");
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String user = str(plan, "user"), pass = str(plan, "pass");
        if (!user.isEmpty()) {
            // Proxy credentials, as Java services give them: an Authenticator. Basic through a CONNECT
            // tunnel needs -Djdk.http.auth.tunneling.disabledSchemes= (it is disabled by default).
            Authenticator.setDefault(new Authenticator() {
                protected PasswordAuthentication getPasswordAuthentication() {
                    return getRequestorType() == RequestorType.PROXY ? new PasswordAuthentication(user, pass.toCharArray()) : null;
                }
            });
        }
        if (args[0].equals("httpclient")) httpClient(); else urlConnection();
    }

    static void httpClient() throws Exception {
        HttpClient.Builder b = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .proxy(ProxySelector.getDefault()).connectTimeout(Duration.ofSeconds(10));
        if (Authenticator.getDefault() != null) b.authenticator(Authenticator.getDefault());
        HttpClient c = b.build();
        Path upload = Paths.get(str(plan, "upload"));
        for (String[] cs : cases()) {
            String name = cs[0];
            try {
                HttpResponse<byte[]> r = null;
                for (int i = 1; i < cs.length; i++) {
                    HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(cs[i])).timeout(Duration.ofSeconds(30));
                    switch (name) {
                        case "post": rb.header("Content-Type", "application/json").header("X-Idempotency-Key", str(plan, "idem"))
                                .POST(HttpRequest.BodyPublishers.ofString("{\"amount\":1234,\"currency\":\"EUR\",\"reference\":\"order-42\"}")); break;
                        case "upload": rb.header("Content-Type", "application/octet-stream").POST(HttpRequest.BodyPublishers.ofFile(upload)); break;
                        case "chunked": rb.header("Content-Type", "application/octet-stream")
                                .POST(HttpRequest.BodyPublishers.ofInputStream(() -> { try { return Files.newInputStream(upload); } catch (IOException e) { throw new UncheckedIOException(e); } })); break;
                        case "gzip": rb.header("Accept-Encoding", "gzip"); break;
                        default: rb.GET();
                    }
                    r = c.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
                }
                report(name, r.statusCode(), "", r.body(), r.headers().firstValue("X-Payrails-Proxy-Error").orElse(""),
                        r.headers().firstValue("Content-Encoding").orElse(""));
            } catch (Exception e) {
                report(name, 0, e.toString(), null, "", "");
            }
        }
    }

    static void urlConnection() throws Exception {
        byte[] upload = Files.readAllBytes(Paths.get(str(plan, "upload")));
        for (String[] cs : cases()) {
            String name = cs[0];
            HttpURLConnection conn = null;
            try {
                int status = 0;
                byte[] body = null;
                for (int i = 1; i < cs.length; i++) {
                    conn = (HttpURLConnection) new URL(cs[i]).openConnection(); // the proxy from http.proxyHost / https.proxyHost
                    conn.setConnectTimeout(10000);
                    conn.setReadTimeout(30000);
                    switch (name) {
                        case "post":
                            conn.setRequestMethod("POST"); conn.setDoOutput(true);
                            conn.setRequestProperty("Content-Type", "application/json");
                            conn.setRequestProperty("X-Idempotency-Key", str(plan, "idem"));
                            try (OutputStream o = conn.getOutputStream()) { o.write("{\"amount\":1234,\"currency\":\"EUR\",\"reference\":\"order-42\"}".getBytes("UTF-8")); }
                            break;
                        case "upload":
                            conn.setRequestMethod("POST"); conn.setDoOutput(true); conn.setFixedLengthStreamingMode(upload.length);
                            conn.setRequestProperty("Content-Type", "application/octet-stream");
                            try (OutputStream o = conn.getOutputStream()) { o.write(upload); }
                            break;
                        case "chunked":
                            conn.setRequestMethod("POST"); conn.setDoOutput(true); conn.setChunkedStreamingMode(64 << 10);
                            conn.setRequestProperty("Content-Type", "application/octet-stream");
                            try (OutputStream o = conn.getOutputStream()) { o.write(upload); }
                            break;
                        case "gzip": conn.setRequestProperty("Accept-Encoding", "gzip"); break;
                    }
                    status = conn.getResponseCode();
                    InputStream in = status >= 400 ? conn.getErrorStream() : conn.getInputStream();
                    body = in == null ? new byte[0] : in.readAllBytes();
                    if (in != null) in.close(); // back to the keep-alive cache
                }
                report(name, status, "", body, conn.getHeaderField("X-Payrails-Proxy-Error"), conn.getHeaderField("Content-Encoding"));
            } catch (Exception e) {
                report(name, 0, e.toString(), null, "", "");
            }
        }
    }
}
