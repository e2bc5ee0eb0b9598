// Interop client: Java's HttpURLConnection with -Dhttp.proxyHost/-Dhttp.proxyPort,
// as legacy Java services call. Usage: java Interop BASE_URL NAME.
// Prints one JSON line per operation (bodies as JSON strings).
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;

public class Interop {
    static final int UPLOAD = 1024 * 1024 + 123;
    static final int DOWNLOAD = 10 * 1024 * 1024;

    public static void main(String[] args) throws Exception {
        String base = args[0], name = args[1];
        HttpURLConnection c = open(base + "/v1/echo?q=1", "GET", name);
        print("get", c.getResponseCode(), readAll(c.getInputStream()));

        c = open(base + "/v1/payments", "POST", name);
        c.setRequestProperty("Content-Type", "application/json");
        c.setRequestProperty("X-Idempotency-Key", "key-" + name);
        c.setDoOutput(true);
        byte[] json = "{\"amount\":1000,\"currency\":\"EUR\"}".getBytes(StandardCharsets.UTF_8);
        c.setFixedLengthStreamingMode(json.length);
        try (OutputStream o = c.getOutputStream()) { o.write(json); }
        print("post", c.getResponseCode(), readAll(c.getInputStream()));

        c = open(base + "/v1/upload", "POST", name);
        c.setRequestProperty("Content-Type", "application/octet-stream");
        c.setDoOutput(true);
        c.setChunkedStreamingMode(8192);
        try (OutputStream o = c.getOutputStream()) {
            byte[] buf = new byte[26 * 1024];
            for (int i = 0; i < buf.length; i++) buf[i] = (byte) ('a' + i % 26);
            int sent = 0;
            while (sent < UPLOAD) {
                int n = Math.min(buf.length, UPLOAD - sent);
                o.write(buf, 0, n);
                sent += n;
            }
        }
        print("upload", c.getResponseCode(), readAll(c.getInputStream()));

        c = open(base + "/bytes/" + DOWNLOAD, "GET", name);
        int status = c.getResponseCode();
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        long size = 0;
        try (InputStream in = c.getInputStream()) {
            byte[] buf = new byte[65536];
            int n;
            while ((n = in.read(buf)) > 0) { md.update(buf, 0, n); size += n; }
        }
        StringBuilder hex = new StringBuilder();
        for (byte b : md.digest()) hex.append(String.format("%02x", b));
        System.out.println("{\"op\":\"download\",\"status\":" + status + ",\"bytes\":" + size + ",\"sha256\":\"" + hex + "\"}");
    }

    static HttpURLConnection open(String url, String method, String name) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(url).openConnection();
        c.setRequestMethod(method);
        c.setRequestProperty("X-Interop", name);
        c.setConnectTimeout(30000);
        c.setReadTimeout(120000);
        return c;
    }

    static String readAll(InputStream in) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        int n;
        while ((n = in.read(buf)) > 0) out.write(buf, 0, n);
        in.close();
        return out.toString(StandardCharsets.UTF_8);
    }

    static void print(String op, int status, String body) {
        StringBuilder s = new StringBuilder();
        for (char ch : body.toCharArray()) {
            switch (ch) {
                case '"': s.append("\\\""); break;
                case '\\': s.append("\\\\"); break;
                case '\n': s.append("\\n"); break;
                case '\r': s.append("\\r"); break;
                case '\t': s.append("\\t"); break;
                default:
                    if (ch < 0x20) s.append(String.format("\\u%04x", (int) ch)); else s.append(ch);
            }
        }
        System.out.println("{\"op\":\"" + op + "\",\"status\":" + status + ",\"body\":\"" + s + "\"}");
    }
}
