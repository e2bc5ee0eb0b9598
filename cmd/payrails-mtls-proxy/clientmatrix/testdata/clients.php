<?php
// The client matrix's PHP clients: the curl extension and the http:// stream wrapper.
//
// Usage: php clients.php curl|streams, with the plan in MATRIX_PLAN (see matrix_test.go).
// curl: libcurl reads http_proxy / https_proxy itself (user:password too); the local CA via
// CURLOPT_CAINFO. streams: read no environment: the proxy is the context's "proxy" option, with
// request_fulluri, and credentials a Proxy-Authorization header. Prints one JSON line per case.
$plan = json_decode(getenv('MATRIX_PLAN'), true);
$lib = $argv[1];

function report($case, $status, $error, $body, $headers) {
    $get = function ($name) use ($headers) {
        foreach ($headers as $h) {
            if (stripos($h, $name . ':') === 0) return trim(substr($h, strlen($name) + 1));
        }
        return '';
    };
    echo json_encode(['case' => $case, 'status' => $status, 'error' => $error, 'body_sha256' => hash('sha256', (string)$body),
        'proxy_error' => $get('X-Payrails-Proxy-Error'), 'content_encoding' => $get('Content-Encoding')]), "\n";
}

if ($lib === 'curl') {
    $ch = curl_init(); // one handle: its connections are kept alive between requests
    foreach ($plan['cases'] as $c) {
        $status = 0; $error = ''; $body = ''; $headers = [];
        foreach ($c['urls'] as $url) {
            curl_reset($ch);
            $headers = [];
            $opts = [CURLOPT_URL => $url, CURLOPT_RETURNTRANSFER => true, CURLOPT_CAINFO => $plan['ca'], CURLOPT_TIMEOUT => 30,
                CURLOPT_HEADERFUNCTION => function ($h, $line) use (&$headers) { $headers[] = trim($line); return strlen($line); }];
            switch ($c['name']) {
                case 'post':
                    $opts[CURLOPT_POSTFIELDS] = $plan['json'];
                    $opts[CURLOPT_HTTPHEADER] = ['Content-Type: application/json', 'X-Idempotency-Key: ' . $plan['idem']];
                    break;
                case 'upload':
                    $opts[CURLOPT_POSTFIELDS] = file_get_contents($plan['upload']);
                    $opts[CURLOPT_HTTPHEADER] = ['Content-Type: application/octet-stream'];
                    break;
                case 'chunked':
                    $f = fopen($plan['upload'], 'rb');
                    $opts[CURLOPT_CUSTOMREQUEST] = 'POST';
                    $opts[CURLOPT_UPLOAD] = true;
                    $opts[CURLOPT_READFUNCTION] = function ($ch, $fd, $len) use ($f) { return (string)fread($f, $len); };
                    $opts[CURLOPT_HTTPHEADER] = ['Content-Type: application/octet-stream', 'Transfer-Encoding: chunked', 'Expect:'];
                    break;
                case 'gzip':
                    $opts[CURLOPT_ENCODING] = ''; // every encoding libcurl decodes, and it decodes
                    break;
            }
            curl_setopt_array($ch, $opts);
            $body = curl_exec($ch);
            $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
            if ($status == 0) $status = curl_getinfo($ch, CURLINFO_HTTP_CONNECTCODE);
            if ($body === false) { $error = curl_error($ch); $body = ''; break; }
        }
        report($c['name'], $status, $error, $body, $headers);
    }
    exit(0);
}

// streams
$p = $plan['proxy'];
foreach ($plan['cases'] as $c) {
    $status = 0; $error = ''; $body = ''; $headers = [];
    foreach ($c['urls'] as $url) {
        $http = ['method' => 'GET', 'header' => [], 'ignore_errors' => true, 'timeout' => 30];
        $scheme = parse_url($url, PHP_URL_SCHEME);
        if (($scheme === 'http' && $p['http']) || ($scheme === 'https' && $p['https'])) {
            $http['proxy'] = 'tcp://' . $p['host'] . ':' . $p['port'];
            $http['request_fulluri'] = $scheme === 'http'; // absolute-form for http://; https:// goes through CONNECT
            if ($p['user'] !== '') $http['header'][] = 'Proxy-Authorization: Basic ' . base64_encode($p['user'] . ':' . $p['pass']);
        }
        switch ($c['name']) {
            case 'post':
                $http['method'] = 'POST';
                $http['header'][] = 'Content-Type: application/json';
                $http['header'][] = 'X-Idempotency-Key: ' . $plan['idem'];
                $http['content'] = $plan['json'];
                break;
            case 'upload':
                $http['method'] = 'POST';
                $http['header'][] = 'Content-Type: application/octet-stream';
                $http['content'] = file_get_contents($plan['upload']);
                break;
            case 'gzip':
                $http['header'][] = 'Accept-Encoding: gzip';
                break;
        }
        $ctx = stream_context_create(['http' => $http, 'ssl' => ['cafile' => $plan['ca']]]);
        $http_response_header = [];
        $body = @file_get_contents($url, false, $ctx);
        $headers = $http_response_header ?? [];
        foreach ($headers as $h) {
            if (preg_match('#^HTTP/\S+ (\d{3})#', $h, $m)) $status = (int)$m[1];
        }
        if ($body === false) { $error = error_get_last()['message'] ?? 'failed'; $body = ''; break; }
    }
    report($c['name'], $status, $error, $body, $headers);
}
